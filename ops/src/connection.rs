//! Connecting to AWS IoT: the SDK configuration from the default chain (credentials, region),
//! or the emulator's listener with `--endpoint-url`, with the SDK's retries for throttling;
//! the `iot-data` plane at the account's data endpoint (DescribeEndpoint `iot:Data-ATS`), or at
//! the same `--endpoint-url`.
//!
//! Owns: the HTTP client (hyper + rustls on ring, so that the build needs no C library of its
//! own), the retry configuration, and the up-front credentials and region checks that give the
//! operator one line instead of a failed request. Must not know: any subcommand.

use crate::error::{chain, from_sdk, Attempts, OpsError};
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_iot::config::ProvideCredentials;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use std::time::Duration;

/// The region used with `--endpoint-url` when none is configured (the emulator answers any).
pub const EMULATOR_REGION: &str = "us-east-1";

/// Where and how to connect: the CLI's global options.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// Another endpoint than AWS IoT's, e.g. the emulator's control listener.
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    /// Attempts per request, the first included (the SDK's standard retries with back-off).
    pub max_attempts: u32,
}

/// A connected control-plane client and what the error lines need to know about it.
#[derive(Debug, Clone)]
pub struct Iot {
    pub client: aws_sdk_iot::Client,
    pub attempts: Attempts,
    config: aws_config::SdkConfig,
    endpoint_url: Option<String>,
}

impl Iot {
    /// A client of the `iot-data` plane (shadows) of the same account and region.
    pub async fn data_plane(&self) -> Result<aws_sdk_iotdataplane::Client, OpsError> {
        let url = match &self.endpoint_url {
            Some(url) => url.clone(),
            None => {
                let out = self
                    .client
                    .describe_endpoint()
                    .endpoint_type("iot:Data-ATS")
                    .send()
                    .await
                    .map_err(|e| {
                        from_sdk(
                            "DescribeEndpoint",
                            || "the iot:Data-ATS endpoint".to_owned(),
                            self.attempts,
                            e,
                        )
                    })?;
                match out.endpoint_address() {
                    Some(address) => format!("https://{address}"),
                    None => {
                        return Err(OpsError::Input(
                            "DescribeEndpoint answered no iot:Data-ATS address".into(),
                        ))
                    }
                }
            }
        };
        let config = aws_sdk_iotdataplane::config::Builder::from(&self.config)
            .endpoint_url(url)
            .build();
        Ok(aws_sdk_iotdataplane::Client::from_conf(config))
    }
}

/// Loads the configuration and checks that credentials and a region are there.
pub async fn connect(target: &Target) -> Result<Iot, OpsError> {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let attempts = target.max_attempts.max(1);
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(attempts)
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_secs(20)),
        );
    if let Some(region) = &target.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &target.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let mut config = loader.load().await;
    if config.region().is_none() {
        match target.endpoint_url {
            Some(_) => {
                config = config
                    .into_builder()
                    .region(Region::new(EMULATOR_REGION))
                    .build()
            }
            None => return Err(OpsError::NoRegion),
        }
    }
    let hint = |detail: String| {
        match &target.endpoint_url {
        Some(url) => format!(
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) for {url}; the emulator does not check them, any values do ({detail})"
        ),
        None => format!(
            "configure the default chain: AWS_PROFILE, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, `aws sso login`, or an instance role ({detail})"
        ),
    }
    };
    let Some(provider) = config.credentials_provider() else {
        return Err(OpsError::NoCredentials {
            hint: hint("no credentials provider".to_owned()),
        });
    };
    if let Err(e) = provider.provide_credentials().await {
        return Err(OpsError::NoCredentials {
            hint: hint(chain(&e)),
        });
    }
    Ok(Iot {
        client: aws_sdk_iot::Client::new(&config),
        attempts: Attempts(attempts),
        config,
        endpoint_url: target.endpoint_url.clone(),
    })
}
