//! Embeds an rpath to the real libtorch directory so `idunno-node` runs without LIBTORCH or
//! LD_LIBRARY_PATH, and records the libtorch version it was built against.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=torch-sys did not report its libtorch directory; no rpath set");
        return;
    };
    let lib = PathBuf::from(lib);
    // The assembled LIBTORCH/lib holds links into the wheel; the wheel's real directory is
    // where libtorch_cpu.so finds the CUDA runtime through $ORIGIN.
    let real = std::fs::canonicalize(lib.join("libtorch_cpu.so"))
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .unwrap_or_else(|| lib.clone());
    // First the bundle's own lib/ beside bin/ (`make dist`), then the build machine's libtorch.
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", real.display());
    rpath_link(&real);
    let version = lib
        .parent()
        .map(|root| root.join("build-version"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=IDUNNO_LIBTORCH_VERSION={version}");
}

/// Tells the linker where the libraries libtorch_cpu.so needs (the CUDA runtime, in the
/// wheel's `nvidia/*/lib`) are: GNU ld, the default linker before Rust 1.90, resolves them at
/// link time and does not read libtorch's `$ORIGIN` rpath through the LIBTORCH links.
fn rpath_link(real: &std::path::Path) {
    let Some(site) = real.parent().and_then(|torch| torch.parent()) else {
        return;
    };
    let Ok(dirs) = std::fs::read_dir(site.join("nvidia")) else {
        return;
    };
    for dir in dirs.flatten() {
        let lib = dir.path().join("lib");
        if lib.is_dir() {
            println!("cargo:rustc-link-arg=-Wl,-rpath-link,{}", lib.display());
        }
    }
}
