//! Builds the vendored libzmq with CURVE: libsodium comes from
//! libsodium-sys-stable, which builds it from its bundled source and exports
//! its include and library directories as DEP_SODIUM_INCLUDE / DEP_SODIUM_LIB.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build/main.rs");
    println!("cargo:rerun-if-env-changed=PROFILE");
    let include = env::var("DEP_SODIUM_INCLUDE").expect("libsodium-sys-stable exports its include dir");
    let lib = env::var("DEP_SODIUM_LIB").expect("libsodium-sys-stable exports its lib dir");
    // libzmq's own compiler warnings are upstream's business, not ours.
    for var in ["CFLAGS", "CXXFLAGS"] {
        let flags = env::var(var).unwrap_or_default();
        env::set_var(var, format!("{flags} -w"));
    }
    zeromq_src::Build::new()
        .with_libsodium(Some(zeromq_src::LibLocation::new(lib, include)))
        .build();
}
