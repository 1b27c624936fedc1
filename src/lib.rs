//! greengrass-jobs-handler: an AWS IoT Greengrass v2 component that runs AWS IoT Jobs, and a
//! local emulator of the nucleus and the cloud side, so that jobs can be developed and tested
//! without an AWS account.

pub mod clock;
pub mod config;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod exec;
pub mod handler;
pub mod ipc;
pub mod jobs;
pub mod journal;
pub mod logging;
#[cfg(feature = "emulator")]
pub mod sim;
pub mod topic;
