//! Build script: one link decision for a faster cold start (issue 19, BENCHMARKS.md
//! "Issue 19, round 3").
//!
//! On Linux with glibc, Rust's standard library links the unwinder from the shared
//! `libgcc_s.so.1`. Loading it costs every process a library to map and relocate, and its
//! constructor (`__cpu_indicator_init`) runs `cpuid`, which traps to the hypervisor on a
//! virtual machine: together ~0.2 ms of a ~2 ms one-shot call. The same unwinder is in
//! gcc's static `libgcc_eh.a` (what `+crt-static` builds use); naming it here, ahead of the
//! standard library's `-lgcc_s`, resolves the unwinder's symbols first, and the linker's
//! `--as-needed` then drops `libgcc_s` from the binary's `NEEDED` list. Panics still unwind
//! (the `serve` loop turns a handler's panic into an `internal` error: that path is tested).
//!
//! Skipped (the standard link) on other targets, with `+crt-static` (which already does
//! this), when the C compiler cannot name `libgcc_eh.a`, or when
//! `MODELAUTH_SHARED_LIBGCC=1` is set.

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=MODELAUTH_SHARED_LIBGCC");
    println!("cargo:rerun-if-env-changed=CC");
    let var = |k: &str| env::var(k).unwrap_or_default();
    let crt_static = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static");
    if var("CARGO_CFG_TARGET_OS") != "linux"
        || var("CARGO_CFG_TARGET_ENV") != "gnu"
        || crt_static
        || var("MODELAUTH_SHARED_LIBGCC") == "1"
        || !static_unwinder_available()
    {
        return;
    }
    // Not bundled into the rlib: the archive is named at the final link only.
    println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
}

/// Whether the C compiler that links the binary knows `libgcc_eh.a` (it answers the bare
/// name, not a path, when it does not).
fn static_unwinder_available() -> bool {
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let Ok(out) = Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
    else {
        return false;
    };
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    out.status.success() && Path::new(&path).is_absolute() && Path::new(&path).exists()
}
