//! The job document as a device reads it: presigned-URL placeholders replaced on every read
//! (DescribeJobExecution, StartNextPendingJobExecution, UpdateJobExecution with
//! `includeJobDocument`, `notify-next`), and CreateJob's `presignedUrlConfig`.
//!
//! Owns: when a document is rendered, the URLs' lifetime (`expiresInSec`, 60–3600, default
//! 3600) and CreateJob's refusals (the range, `roleArn`'s length, a document with placeholders
//! but no `roleArn`, as the service requires a role to presign with). Must not know: how URLs
//! are signed or what the placeholders look like (the emulated S3's
//! [`crate::emulator::cloud::s3`]), or where the S3 listener is (the shell sets a
//! [`Presigner`] when it binds one).
//!
//! Sans-IO: the time of a read comes in with the request; the same reads at the same times
//! give the same documents.

use super::{control, ControlError, Job, JobsService, NewJob};
use crate::emulator::cloud::s3::{self, Presigner};
use serde_json::Value;

/// CreateJob's `presignedUrlConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresignedUrlConfig {
    pub role_arn: Option<String>,
    /// Seconds a presigned URL is valid; none means [`s3::DEFAULT_EXPIRES_IN`].
    pub expires_in_sec: Option<u64>,
}

/// Length range of `presignedUrlConfig.roleArn`.
const ROLE_ARN_LEN: std::ops::RangeInclusive<usize> = 20..=2048;

/// CreateJob's checks of `presignedUrlConfig` against the document.
pub(super) fn validate_presigned_url_config(new: &NewJob) -> Result<(), ControlError> {
    let config = new.presigned_url.as_ref();
    if let Some(expires) = config.and_then(|c| c.expires_in_sec) {
        if !s3::EXPIRES_IN_RANGE.contains(&expires) {
            return Err(control(
                "InvalidRequestException",
                format!(
                    "presignedUrlConfig.expiresInSec must be {} to {}, not {expires}",
                    s3::EXPIRES_IN_RANGE.start(),
                    s3::EXPIRES_IN_RANGE.end()
                ),
            ));
        }
    }
    let role = config.and_then(|c| c.role_arn.as_deref());
    if let Some(role) = role {
        if !ROLE_ARN_LEN.contains(&role.chars().count()) {
            return Err(control(
                "InvalidRequestException",
                "presignedUrlConfig.roleArn must be 20 to 2048 characters",
            ));
        }
    }
    if role.is_none() && s3::contains_presigned_placeholder(&new.document.to_string()) {
        return Err(control(
            "InvalidRequestException",
            "the job document has presigned-URL placeholders: presignedUrlConfig.roleArn is \
             required (the role the service presigns with)",
        ));
    }
    Ok(())
}

impl JobsService {
    /// Where documents' presigned URLs point from now on; `None` leaves placeholders as they
    /// are (no S3 listener).
    pub fn set_presigner(&mut self, presigner: Option<Presigner>) {
        self.presigner = presigner;
    }

    /// `job`'s document as a device reading it at `now_ms` gets it.
    pub(super) fn device_document(&self, job: &Job, now_ms: u64) -> Value {
        let Some(presigner) = &self.presigner else {
            return job.document.clone();
        };
        let expires_in = job
            .presigned_url
            .as_ref()
            .and_then(|c| c.expires_in_sec)
            .unwrap_or(s3::DEFAULT_EXPIRES_IN);
        presigner.render(&job.document, now_ms / 1000, expires_in)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::cloud::jobs_service::Output;
    use crate::emulator::cloud::s3::S3;
    use serde_json::json;

    const THING: &str = "dev-1";
    const BASE: &str = "http://127.0.0.1:9000";
    const ROLE: &str = "arn:aws:iam::123456789012:role/jobs-presign";
    const T0: u64 = 1_800_000_000_000;

    fn store() -> S3 {
        let mut s = S3::new(11);
        s.create_bucket("firmware").unwrap();
        s.put_object("firmware", "v2/image.bin", b"image".to_vec(), "", 1)
            .unwrap();
        s
    }

    fn placeholder_document() -> Value {
        json!({"version": "1.0", "steps": [{"action": {"type": "runHandler", "input": {
            "handler": "download-file.sh",
            "args": ["${aws:iot:s3-presigned-url-v2:https://s3.us-east-1.amazonaws.com/firmware/v2/image.bin}", "/data/image.bin"]}}}]})
    }

    fn new_job(id: &str, presigned_url: Option<PresignedUrlConfig>) -> NewJob {
        NewJob {
            job_id: id.into(),
            targets: vec![THING.into()],
            document: placeholder_document(),
            presigned_url,
            ..NewJob::default()
        }
    }

    fn config(role: Option<&str>, expires: Option<u64>) -> Option<PresignedUrlConfig> {
        Some(PresignedUrlConfig {
            role_arn: role.map(str::to_owned),
            expires_in_sec: expires,
        })
    }

    fn service(s3: &S3) -> JobsService {
        let mut jobs = JobsService::default();
        jobs.create_thing(THING).unwrap();
        jobs.set_presigner(Some(s3.presigner(Some(BASE.into()))));
        jobs
    }

    /// The URL a document read delivered, checked against the store at `at` (epoch s).
    fn fetch(s3: &S3, url: &str, at: u64) -> Result<Vec<u8>, u16> {
        let (path, query) = url
            .strip_prefix(BASE)
            .and_then(|r| r.split_once('?'))
            .unwrap_or_else(|| panic!("not presigned under {BASE}: {url}"));
        s3.get_presigned(path, query, at)
            .map(|o| o.data.clone())
            .map_err(|e| e.status)
    }

    fn url_of(execution: &crate::jobs::messages::JobExecution) -> String {
        execution.job_document.as_ref().unwrap()["steps"][0]["action"]["input"]["args"][0]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn create_job_checks_presigned_url_config() {
        let s3 = store();
        let mut jobs = service(&s3);
        let refused = |jobs: &mut JobsService, job| jobs.create_job(job, T0).unwrap_err();
        let e = refused(&mut jobs, new_job("no-config", None));
        assert_eq!(e.code, "InvalidRequestException");
        assert!(e.message.contains("roleArn is required"), "{e}");
        let e = refused(&mut jobs, new_job("no-role", config(None, Some(60))));
        assert!(e.message.contains("roleArn is required"), "{e}");
        for expires in [59, 3601, 0] {
            let e = refused(
                &mut jobs,
                new_job("range", config(Some(ROLE), Some(expires))),
            );
            assert!(e.message.contains("60 to 3600"), "{expires}: {e}");
        }
        let e = refused(
            &mut jobs,
            new_job("short-role", config(Some("arn:x"), None)),
        );
        assert!(e.message.contains("roleArn"), "{e}");
        for (id, expires) in [("low", 60), ("high", 3600)] {
            jobs.create_job(new_job(id, config(Some(ROLE), Some(expires))), T0)
                .unwrap();
        }
        // Without placeholders no role is needed.
        let plain = NewJob {
            document: json!({"operation": "echo"}),
            ..new_job("plain", None)
        };
        jobs.create_job(plain, T0).unwrap();
    }

    #[test]
    fn every_document_read_gets_a_fresh_url_that_expires() {
        let s3 = store();
        let mut jobs = service(&s3);
        let out = jobs
            .create_job(new_job("dl", config(Some(ROLE), Some(60))), T0)
            .unwrap();
        // notify-next carries the document, presigned at creation.
        let next = out
            .iter()
            .find_map(|o| match o {
                Output::Publish(p) if p.topic.ends_with("/notify-next") => {
                    serde_json::from_slice::<crate::jobs::messages::NotifyNext>(&p.payload).ok()
                }
                _ => None,
            })
            .and_then(|n| n.execution)
            .expect("notify-next with the execution");
        let notified = url_of(&next);
        assert_eq!(fetch(&s3, &notified, T0 / 1000 + 60), Ok(b"image".to_vec()));
        assert_eq!(fetch(&s3, &notified, T0 / 1000 + 61), Err(403));

        // A describe later gets a URL signed then, valid for expiresInSec from then.
        let later = T0 + 120_000;
        let (described, _) = jobs
            .describe_job_execution(THING, "dl", None, true, later)
            .unwrap();
        let described = url_of(&described.execution.unwrap());
        assert_ne!(described, notified);
        assert_eq!(
            fetch(&s3, &described, later / 1000 + 60),
            Ok(b"image".to_vec())
        );
        assert_eq!(fetch(&s3, &described, later / 1000 + 61), Err(403));
        assert_eq!(fetch(&s3, &notified, later / 1000), Err(403));

        // StartNext and an update asking for the document present fresh ones too.
        let start = T0 + 200_000;
        let (started, _) = jobs
            .start_next_pending_job_execution(THING, None, None, start)
            .unwrap();
        let started = url_of(&started.execution.unwrap());
        assert_eq!(
            fetch(&s3, &started, start / 1000 + 30),
            Ok(b"image".to_vec())
        );
        let update: crate::jobs::messages::UpdateRequest =
            serde_json::from_value(json!({"status": "IN_PROGRESS", "includeJobDocument": true}))
                .unwrap();
        let at = T0 + 300_000;
        let (updated, _) = jobs.update_job_execution(THING, "dl", &update, at).unwrap();
        let document = updated.job_document.unwrap();
        let url = document["steps"][0]["action"]["input"]["args"][0]
            .as_str()
            .unwrap();
        assert_eq!(fetch(&s3, url, at / 1000 + 60), Ok(b"image".to_vec()));
        // The stored job keeps its placeholder.
        assert_eq!(jobs.jobs["dl"].document, placeholder_document());
    }

    #[test]
    fn the_default_lifetime_is_an_hour_and_no_listener_keeps_placeholders() {
        let s3 = store();
        let mut jobs = service(&s3);
        jobs.create_job(new_job("dl", config(Some(ROLE), None)), T0)
            .unwrap();
        let (r, _) = jobs
            .describe_job_execution(THING, "dl", None, true, T0)
            .unwrap();
        let url = url_of(&r.execution.unwrap());
        assert!(url.contains("X-Amz-Expires=3600"), "{url}");
        assert_eq!(fetch(&s3, &url, T0 / 1000 + 3600), Ok(b"image".to_vec()));
        assert_eq!(fetch(&s3, &url, T0 / 1000 + 3601), Err(403));

        jobs.set_presigner(Some(s3.presigner(None)));
        let (r, _) = jobs
            .describe_job_execution(THING, "dl", None, true, T0)
            .unwrap();
        assert_eq!(
            r.execution.unwrap().job_document.unwrap(),
            placeholder_document()
        );
    }
}
