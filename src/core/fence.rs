//! OpenClaw's failed-refresh fence (OpenClaw 2026.9): after a refresh fails, OpenClaw (and
//! an offline `doctor --fix`) replaces an OAuth profile's tokens with placeholders of the
//! form `openclaw-oauth-refresh-fence:v1:<32 hex>:[failed:]access:<64 hex>` (and
//! `…:refresh:…`) with `expires: 1`, and reports the profile `expired`. The real tokens
//! survive only in `credentials/oauth.json.migrated-*`. Pure.

/// The prefix every fence token starts with.
pub(crate) const FENCE_PREFIX: &str = "openclaw-oauth-refresh-fence:v1:";

/// Whether `token` is a fence token (OpenClaw's `OAUTH_REFRESH_*_PATTERN`:
/// `^openclaw-oauth-refresh-fence:v1:([a-f0-9]{32}):(failed:)?(access|refresh):([a-f0-9]{64})$`).
pub(crate) fn is_refresh_fence(token: &str) -> bool {
    let Some(rest) = token.strip_prefix(FENCE_PREFIX) else {
        return false;
    };
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let Some((nonce, rest)) = rest.split_once(':') else {
        return false;
    };
    let rest = rest.strip_prefix("failed:").unwrap_or(rest);
    let Some((which, digest)) = rest.split_once(':') else {
        return false;
    };
    hex(nonce, 32) && matches!(which, "access" | "refresh") && hex(digest, 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_openclaws_fence_shape_is_a_fence() {
        let n = "0123456789abcdef0123456789abcdef";
        let d = "a".repeat(64);
        assert!(is_refresh_fence(&format!("{FENCE_PREFIX}{n}:access:{d}")));
        assert!(is_refresh_fence(&format!(
            "{FENCE_PREFIX}{n}:failed:refresh:{d}"
        )));
        assert!(!is_refresh_fence(&format!("{FENCE_PREFIX}{n}:other:{d}")));
        assert!(!is_refresh_fence(&format!(
            "{FENCE_PREFIX}{n}:access:{}",
            "A".repeat(64)
        )));
        assert!(!is_refresh_fence(&format!("{FENCE_PREFIX}{n}x:access:{d}")));
        assert!(!is_refresh_fence("sk-ant-oat-real"));
    }
}
