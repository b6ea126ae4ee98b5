//! Compiles the C++ shim against the libtorch torch-sys builds against (same headers, same ABI).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/prepare.cpp");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let lib = PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB")
            .expect("torch-sys reports its libtorch directory (DEP_TCH_LIBTORCH_LIB)"),
    );
    let root = lib
        .parent()
        .expect("LIBTORCH/lib has a parent")
        .to_path_buf();
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("csrc/prepare.cpp")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(false)
        .compile("idunno_torch_prepare");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=torch_cpu");
    println!("cargo:rustc-link-lib=c10");
    // This crate's own tests run without LIBTORCH or LD_LIBRARY_PATH: the wheel's real
    // directory, where libtorch_cpu.so finds the CUDA runtime through $ORIGIN (binaries that
    // use the crate set their own rpath, as idunno-node's build script does).
    let real = std::fs::canonicalize(lib.join("libtorch_cpu.so"))
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .unwrap_or(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", real.display());
    rpath_link(&real);
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
