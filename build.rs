//! Build script: compiles the journal's protobuf schema with a pure-Rust toolchain (protox
//! parses the .proto, prost-build writes the Rust types: no system `protoc` is needed), and
//! records the target triple so the component says in its first log line which build is running.
//!
//! For the shipped build (a static musl release linked by rust-lld) it also asks the linker for a
//! smaller binary, without changing what the program does:
//! - `--icf=all` folds functions whose machine code is identical (generic copies), as rustc
//!   itself asks of the MSVC linker; Rust gives no function two distinct addresses to rely on.
//! - the unwind tables (`.eh_frame`, its index and the landing-pad tables, about 190 KB) are
//!   left out. The release profile aborts on panic, so nothing unwinds; the only reader left
//!   would be a panic's backtrace, which then shows no frames (the panic message and its
//!   location are still printed, and the process still aborts).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=GGJH_BUILD_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    println!("cargo:rerun-if-env-changed=PROFILE");
    if shipped_build() {
        let script = std::path::Path::new(&std::env::var("OUT_DIR")?).join("no-unwind-tables.ld");
        std::fs::write(
            &script,
            "SECTIONS { /DISCARD/ : { *(.eh_frame) *(.gcc_except_table .gcc_except_table.*) } }\n\
             INSERT AFTER .text;\n",
        )?;
        let bin = "greengrass-jobs-handler";
        println!("cargo:rustc-link-arg-bin={bin}=--icf=all");
        println!("cargo:rustc-link-arg-bin={bin}=--no-eh-frame-hdr");
        println!("cargo:rustc-link-arg-bin={bin}=-T{}", script.display());
    }
    println!("cargo:rerun-if-changed=src/journal/journal.proto");
    let descriptors = protox::compile(["src/journal/journal.proto"], ["src/journal"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}

/// A release build (whose profile aborts on panic) for a musl target whose linker is rust-lld
/// (the flags above are lld's own).
fn shipped_build() -> bool {
    let env = |name| std::env::var(name).unwrap_or_default();
    env("CARGO_CFG_TARGET_ENV") == "musl"
        && env("PROFILE") == "release"
        && env("RUSTC_LINKER").ends_with("rust-lld")
}
