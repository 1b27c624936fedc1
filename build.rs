//! Build script: compiles the journal's protobuf schema with a pure-Rust toolchain (protox
//! parses the .proto, prost-build writes the Rust types: no system `protoc` is needed), and
//! records the target triple so the component says in its first log line which build is running.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=GGJH_BUILD_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/journal/journal.proto");
    let descriptors = protox::compile(["src/journal/journal.proto"], ["src/journal"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
