//! Build script: records the target triple so the component can say in its first log line
//! exactly which build is running on a device (x86_64, aarch64 or armv7).

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=GGJH_BUILD_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
