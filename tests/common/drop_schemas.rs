//! Cleanup for the PostgreSQL conformance runs: every schema a run creates is dropped.

/// Drops the schemas named `<prefix>…` on `url` when dropped (also when a check panics).
pub struct DropSchemas(pub String, pub String);

impl Drop for DropSchemas {
    fn drop(&mut self) {
        let Ok(mut config) = self.0.parse::<postgres::Config>() else {
            return;
        };
        if config.get_hosts().is_empty() {
            config.host("/var/run/postgresql");
        }
        if config.get_user().is_none() {
            config.user(&std::env::var("USER").unwrap_or_else(|_| "root".into()));
        }
        let Ok(mut c) = config.connect(postgres::NoTls) else {
            return;
        };
        let like = format!("{}%", self.1.replace('_', "\\_"));
        let Ok(rows) = c.query_typed(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1",
            &[(&like, postgres::types::Type::TEXT)],
        ) else {
            return;
        };
        for r in rows {
            let name: String = r.get(0);
            if name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
            }
        }
    }
}
