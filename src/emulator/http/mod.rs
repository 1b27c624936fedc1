//! The emulator over HTTP: the listeners boto3 and the AWS CLI reach with `endpoint_url`.
//!
//! The control listener serves the AWS IoT control plane ([`aws_iot`], [`topic_rules`],
//! [`job_templates`]), `iot-data` Publish ([`iot_data`]) and the emulator's own routes
//! ([`emulator_routes`]). The `iot-jobs-data` plane ([`jobs_data`]) has its own listener: its
//! paths collide with the control plane's. The emulated S3 ([`s3`]) has one too (path style). Each route group is a
//! pure function from a decoded [`server::Request`] to a [`server::Reply`], unit-tested
//! without sockets; [`server`] is the only part that knows hyper.
//!
//! Owns: which route groups each listener serves, in which order, and the addresses they are
//! bound to. Must not know: the Jobs rules, the broker or the nucleus.

pub mod account;
pub mod aws_iot;
pub mod emulator_routes;
pub mod fleet;
pub mod iot_data;
pub mod job_configs;
pub mod job_templates;
pub mod jobs_data;
pub mod s3;
pub mod server;
pub mod topic_rules;

use crate::emulator::Emulator;
use server::{no_route, Reply, Request};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The addresses the listeners are bound to (DescribeEndpoint answers them).
#[derive(Debug, Default)]
pub struct Endpoints {
    inner: Mutex<EndpointAddresses>,
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct EndpointAddresses {
    pub(crate) control: Option<SocketAddr>,
    pub(crate) jobs_data: Option<SocketAddr>,
    pub(crate) s3: Option<SocketAddr>,
}

impl Endpoints {
    fn get(&self) -> EndpointAddresses {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set(&self, f: impl FnOnce(&mut EndpointAddresses)) {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn control(&self) -> Option<SocketAddr> {
        self.get().control
    }

    pub fn jobs_data(&self) -> Option<SocketAddr> {
        self.get().jobs_data
    }

    pub fn s3(&self) -> Option<SocketAddr> {
        self.get().s3
    }
}

/// What the listeners share: the emulator and where they listen.
///
/// Call contract: build one per emulator with [`HttpState::new`], then start listeners with
/// [`serve_control`]; the state lives as long as any listener.
pub struct HttpState {
    pub emulator: Arc<Emulator>,
    pub endpoints: Endpoints,
    pub topic_rules: topic_rules::TopicRules,
    pub templates: job_templates::TemplateRoutes,
    pub s3: s3::S3Routes,
}

impl HttpState {
    pub fn new(emulator: Arc<Emulator>) -> Arc<Self> {
        Arc::new(Self {
            emulator,
            endpoints: Endpoints::default(),
            topic_rules: topic_rules::TopicRules::default(),
            templates: job_templates::TemplateRoutes::default(),
            s3: s3::S3Routes::new(signing_key()),
        })
    }
}

/// The control listener's router: templates first (they take CreateJob calls naming a
/// template), then the control plane, rules, iot-data and the emulator's routes.
pub fn control(state: &HttpState, request: &Request<'_>) -> Reply {
    let world = state.emulator.world();
    state
        .templates
        .handle(world, request)
        .or_else(|| aws_iot::handle(world, &state.endpoints, request))
        .or_else(|| account::handle(world, request))
        .or_else(|| fleet::handle(world, request))
        .or_else(|| state.topic_rules.handle(world, request))
        .or_else(|| iot_data::handle(world, request))
        .or_else(|| emulator_routes::handle(&state.emulator, request))
        .unwrap_or_else(|| no_route(request))
}

/// Serves the control listener on `addr`; returns the bound address.
pub async fn serve_control(
    state: Arc<HttpState>,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let bound = server::serve(Arc::clone(&state), addr, "control", control).await?;
    state.endpoints.set(|e| e.control = Some(bound.0));
    Ok(bound)
}

fn jobs_data(state: &HttpState, request: &Request<'_>) -> Reply {
    jobs_data::handle(state.emulator.world(), request)
}

/// Serves the `iot-jobs-data` listener on `addr`; returns the bound address.
pub async fn serve_jobs_data(
    state: Arc<HttpState>,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let bound = server::serve(Arc::clone(&state), addr, "jobs_data", jobs_data).await?;
    state.endpoints.set(|e| e.jobs_data = Some(bound.0));
    Ok(bound)
}

/// A per-process key for presigned URLs: std's randomly seeded hasher, so URLs of one run do
/// not validate in another. Presigned URLs are not part of the world's event log.
fn signing_key() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one("s3 signing key")
}

fn s3_router(state: &HttpState, request: &Request<'_>) -> Reply {
    state
        .s3
        .handle(request, state.emulator.world().now() / 1000)
}

/// Serves the emulated S3 on `addr`; returns the bound address.
pub async fn serve_s3(
    state: Arc<HttpState>,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let bound = server::serve(Arc::clone(&state), addr, "s3", s3_router).await?;
    state.endpoints.set(|e| e.s3 = Some(bound.0));
    Ok(bound)
}
