//! What can go wrong for an operator, each as one line that says what to do.
//!
//! Owns: [`OpsError`] and the mapping of the AWS SDK's errors onto it (throttling after the
//! retries, missing resources, unreachable endpoints, service errors by their AWS name). Must not
//! know: which subcommand failed or how the CLI prints (it only gives the line).

use aws_sdk_iot::error::{ProvideErrorMetadata, SdkError};

/// A failure that stops a subcommand. `Display` is the whole message: one line, no backtrace.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("no AWS credentials: {hint}")]
    NoCredentials { hint: String },
    #[error("no AWS region: set AWS_REGION (or a region in the AWS profile), or pass --region")]
    NoRegion,
    #[error("{operation} was throttled by AWS IoT even after {attempts} attempts; wait and run the same command again (it resumes), or raise --max-attempts")]
    Throttled {
        operation: &'static str,
        attempts: u32,
    },
    #[error("{what} does not exist ({operation}: {message})")]
    NotFound {
        what: String,
        operation: &'static str,
        message: String,
    },
    #[error("{operation} failed: {code}: {message}")]
    Service {
        operation: &'static str,
        code: String,
        message: String,
    },
    #[error("cannot reach AWS IoT for {operation}: {detail}")]
    Unreachable {
        operation: &'static str,
        detail: String,
    },
    #[error("thing {thing} did not finish job {job_id} within {seconds} s (its execution is {status}: is the device online?); job {job_id} was canceled")]
    Timeout {
        thing: String,
        job_id: String,
        seconds: u64,
        status: String,
    },
    #[error("job {job_id} already exists with a different {field}; choose another --job-id, or delete the job first")]
    JobDiffers { job_id: String, field: String },
    #[error("thing group {group} already exists with a different {field}; choose another --job-id, or delete the group first")]
    GroupDiffers { group: String, field: String },
    #[error("{0}")]
    Input(String),
}

/// The SDK's retries, as configured, for the throttling message.
#[derive(Debug, Clone, Copy)]
pub struct Attempts(pub u32);

/// Maps an SDK error of `operation` to an [`OpsError`]; `what` names the resource for
/// ResourceNotFoundException ("thing core-1").
pub fn from_sdk<E, R>(
    operation: &'static str,
    what: impl FnOnce() -> String,
    attempts: Attempts,
    err: SdkError<E, R>,
) -> OpsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("UnknownError").to_owned();
            let message = e.message().unwrap_or("no message").to_owned();
            classify(operation, what, attempts, code, message)
        }
        SdkError::DispatchFailure(d) => OpsError::Unreachable {
            operation,
            detail: d
                .as_connector_error()
                .map_or_else(|| format!("{d:?}"), |c| chain(c)),
        },
        SdkError::TimeoutError(_) => OpsError::Unreachable {
            operation,
            detail: "the request timed out".to_owned(),
        },
        other => {
            let (code, message) = (
                other.code().map(str::to_owned),
                other.message().map(str::to_owned),
            );
            match code {
                Some(code) => {
                    classify(operation, what, attempts, code, message.unwrap_or_default())
                }
                None => OpsError::Unreachable {
                    operation,
                    detail: chain(&other),
                },
            }
        }
    }
}

fn classify(
    operation: &'static str,
    what: impl FnOnce() -> String,
    attempts: Attempts,
    code: String,
    message: String,
) -> OpsError {
    match code.as_str() {
        "ThrottlingException" | "TooManyRequestsException" | "LimitExceededException" => {
            OpsError::Throttled {
                operation,
                attempts: attempts.0,
            }
        }
        "ResourceNotFoundException" => OpsError::NotFound {
            what: what(),
            operation,
            message,
        },
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "InvalidClientTokenId"
        | "UnauthorizedException" => OpsError::NoCredentials {
            hint: format!(
                "AWS IoT refused them for {operation} ({code}: {message}); refresh the credentials of the default chain"
            ),
        },
        _ => OpsError::Service {
            operation,
            code,
            message,
        },
    }
}

/// An error and its sources on one line.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_codes_become_their_operator_line() {
        let throttled = classify(
            "CreateJob",
            || "job j".into(),
            Attempts(8),
            "ThrottlingException".into(),
            "Rate exceeded".into(),
        );
        assert_eq!(
            throttled.to_string(),
            "CreateJob was throttled by AWS IoT even after 8 attempts; wait and run the same command again (it resumes), or raise --max-attempts"
        );
        let missing = classify(
            "DescribeThing",
            || "thing core-9".into(),
            Attempts(3),
            "ResourceNotFoundException".into(),
            "Thing core-9 cannot be found".into(),
        );
        assert_eq!(
            missing.to_string(),
            "thing core-9 does not exist (DescribeThing: Thing core-9 cannot be found)"
        );
        let other = classify(
            "CreateJob",
            || unreachable!("only for ResourceNotFoundException"),
            Attempts(3),
            "InvalidRequestException".into(),
            "bad".into(),
        );
        assert_eq!(
            other.to_string(),
            "CreateJob failed: InvalidRequestException: bad"
        );
        assert!(matches!(
            classify(
                "ListJobs",
                String::new,
                Attempts(1),
                "UnrecognizedClientException".into(),
                "x".into()
            ),
            OpsError::NoCredentials { .. }
        ));
    }

    #[test]
    fn every_message_is_one_line() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "dispatch\nfailed")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(chain(&e), "dispatch failed: connection refused");
    }
}
