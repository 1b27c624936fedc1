//! AFL++ entry point of the `jobs_responses` target (see fuzz/README.md).

fn main() {
    afl::fuzz!(|data: &[u8]| ggjh_fuzz::jobs_responses::check(data));
}
