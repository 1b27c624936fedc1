//! AFL++ entry point of the `document` target (see fuzz/README.md).

fn main() {
    afl::fuzz!(|data: &[u8]| ggjh_fuzz::document::check(data));
}
