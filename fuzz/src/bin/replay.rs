//! Runs inputs through a target's check without AFL++, to see a finding's panic:
//! `cargo run --release --bin replay -- <target> <file>...`.

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_default();
    let Some(check) = ggjh_fuzz::target(&name) else {
        let names: Vec<&str> = ggjh_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!(
            "usage: replay <target> <file>...; targets: {}",
            names.join(" ")
        );
        std::process::exit(2);
    };
    for path in args {
        match std::fs::read(&path) {
            Ok(data) => {
                eprintln!("{name}: {path}");
                check(&data);
            }
            Err(e) => {
                eprintln!("{path}: {e}");
                std::process::exit(2);
            }
        }
    }
}
