//! Job-template routes: CreateJobTemplate, DescribeJobTemplate, ListJobTemplates,
//! DeleteJobTemplate, DescribeManagedJobTemplate, ListManagedJobTemplates, and CreateJob with
//! `jobTemplateArn` + `documentParameters` (the document, and a custom template's
//! `presignedUrlConfig` when the job sets none, are resolved here; the job is created by the
//! control-plane routes).
//!
//! Owns: paths and shapes of those routes. Must not know: template rules and substitution
//! (the cloud's [`crate::emulator::cloud::job_templates`]), sockets or hyper.

use super::aws_iot::{create_job, from_control, presigned_url_config, presigned_url_json, secs};
use super::server::{error, ok, Reply, Request};
use crate::emulator::cloud::job_templates::{JobTemplate, JobTemplates, NewJobTemplate};
use crate::emulator::shared_world::SharedWorld;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// The templates of the emulated account.
///
/// Call contract: one per emulator; time comes from the world's clock.
#[derive(Debug)]
pub struct TemplateRoutes {
    templates: Mutex<JobTemplates>,
}

impl Default for TemplateRoutes {
    fn default() -> Self {
        Self {
            templates: Mutex::new(JobTemplates::new(
                super::aws_iot::REGION,
                super::aws_iot::ACCOUNT,
            )),
        }
    }
}

fn template_json(t: &JobTemplate, with_document: bool) -> Value {
    let mut v = json!({
        "jobTemplateArn": t.arn,
        "jobTemplateId": t.id,
        "description": t.description,
        "createdAt": secs(t.created_at_ms),
    });
    if with_document {
        v["document"] = json!(t.document);
        if let Some(p) = &t.presigned_url {
            v["presignedUrlConfig"] = presigned_url_json(p);
        }
    }
    v
}

impl TemplateRoutes {
    fn templates(&self) -> MutexGuard<'_, JobTemplates> {
        self.templates.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves a template request (or a CreateJob naming a template), or `None`.
    pub fn handle(&self, world: &SharedWorld, request: &Request<'_>) -> Option<Reply> {
        let segs = request.segs();
        let reply = match (request.method, segs.as_slice()) {
            ("PUT", ["jobs", job_id]) => {
                let body = request.json().ok()?;
                body.get("jobTemplateArn")?;
                self.create_job_from_template(world, job_id, body)
            }
            ("PUT", ["job-templates", id]) => match request.json() {
                Ok(body) => {
                    let Some(document) = body.get("document").and_then(Value::as_str) else {
                        return Some(error(
                            400,
                            "InvalidRequestException",
                            "document is required (documentSource and jobArn are not emulated)",
                        ));
                    };
                    let presigned_url = match presigned_url_config(&body) {
                        Ok(p) => p,
                        Err(reply) => return Some(reply),
                    };
                    let new = NewJobTemplate {
                        presigned_url,
                        job_template_id: (*id).to_owned(),
                        description: body
                            .get("description")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        document: document.to_owned(),
                    };
                    self.templates()
                        .create(new, world.now())
                        .map(|t| ok(json!({"jobTemplateArn": t.arn, "jobTemplateId": t.id})))
                        .unwrap_or_else(from_control)
                }
                Err(r) => r,
            },
            ("GET", ["job-templates", id]) => self
                .templates()
                .describe(id)
                .map(|t| ok(template_json(t, true)))
                .unwrap_or_else(from_control),
            ("GET", ["job-templates"]) => {
                let max = request
                    .query_value("maxResults")
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(250);
                let token = request.query_value("nextToken");
                let templates = self.templates();
                let (page, next) = templates.list(max, token.as_deref());
                let list: Vec<Value> = page.into_iter().map(|t| template_json(t, false)).collect();
                let mut v = json!({"jobTemplates": list});
                if let Some(n) = next {
                    v["nextToken"] = json!(n);
                }
                ok(v)
            }
            ("DELETE", ["job-templates", id]) => self
                .templates()
                .delete(id)
                .map(|()| ok(json!({})))
                .unwrap_or_else(from_control),
            ("GET", ["managed-job-templates", name]) => {
                let version = request.query_value("templateVersion");
                let templates = self.templates();
                templates
                    .describe_managed(name, version.as_deref())
                    .map(|t| {
                        let parameters: Vec<Value> = t
                            .parameters
                            .iter()
                            .map(|p| json!({"key": p.key, "description": p.description, "regex": p.regex, "example": p.example, "optional": p.optional}))
                            .collect();
                        ok(json!({
                            "templateName": t.name,
                            "templateArn": templates.managed_arn(t),
                            "description": t.description,
                            "templateVersion": t.version,
                            "environments": t.environments,
                            "documentParameters": parameters,
                            "document": t.document,
                        }))
                    })
                    .unwrap_or_else(from_control)
            }
            ("GET", ["managed-job-templates"]) => {
                let name = request.query_value("templateName");
                let templates = self.templates();
                let list: Vec<Value> = templates
                    .list_managed(name.as_deref())
                    .into_iter()
                    .map(|t| json!({"templateArn": templates.managed_arn(t), "templateName": t.name, "description": t.description, "environments": t.environments, "templateVersion": t.version}))
                    .collect();
                ok(json!({"managedJobTemplates": list}))
            }
            _ => return None,
        };
        Some(reply)
    }

    fn create_job_from_template(
        &self,
        world: &SharedWorld,
        job_id: &str,
        mut body: Value,
    ) -> Reply {
        if body.get("document").is_some() || body.get("documentSource").is_some() {
            return error(
                400,
                "InvalidRequestException",
                "jobTemplateArn excludes document and documentSource",
            );
        }
        let arn = body
            .get("jobTemplateArn")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut parameters = BTreeMap::new();
        if let Some(map) = body.get("documentParameters").and_then(Value::as_object) {
            for (k, v) in map {
                let Some(v) = v.as_str() else {
                    return error(
                        400,
                        "InvalidRequestException",
                        format!("documentParameters.{k} must be a string"),
                    );
                };
                parameters.insert(k.clone(), v.to_owned());
            }
        }
        let templates = self.templates();
        let document = match templates.document_for_job(&arn, &parameters) {
            Ok(d) => d,
            Err(e) => return from_control(e),
        };
        body["document"] = json!(document);
        if body.get("presignedUrlConfig").is_none() {
            if let Some(p) = templates
                .custom_by_arn(&arn)
                .and_then(|t| t.presigned_url.as_ref())
            {
                body["presignedUrlConfig"] = presigned_url_json(p);
            }
        }
        drop(templates);
        create_job(world, job_id, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::clock::ClockMode;
    use crate::emulator::http::aws_iot::thing_arn;
    use crate::emulator::http::server::no_route;
    use crate::emulator::{Emulator, EmulatorOptions};

    fn call(t: &TemplateRoutes, e: &Emulator, method: &str, path: &str, body: Value) -> Reply {
        let text = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let request = Request::new(method, path, "", text.as_bytes());
        t.handle(e.world(), &request)
            .unwrap_or_else(|| no_route(&request))
    }

    fn emulator() -> Emulator {
        Emulator::with_options(EmulatorOptions {
            thing: "core".into(),
            clock: ClockMode::Manual,
            ..EmulatorOptions::default()
        })
    }

    #[test]
    fn custom_templates_are_created_described_listed_and_deleted() {
        let e = emulator();
        let t = TemplateRoutes::default();
        let r = call(
            &t,
            &e,
            "PUT",
            "/job-templates/tpl",
            json!({"description": "d", "document": "{\"operation\":\"echo\"}"}),
        );
        assert_eq!(
            r["jobTemplateArn"],
            "arn:aws:iot:us-east-1:123456789012:jobtemplate/tpl"
        );
        assert_eq!(
            call(
                &t,
                &e,
                "PUT",
                "/job-templates/tpl",
                json!({"document": "{}"})
            )
            .error_type,
            Some("ConflictException")
        );
        assert_eq!(
            call(&t, &e, "GET", "/job-templates/tpl", Value::Null)["document"],
            "{\"operation\":\"echo\"}"
        );
        assert_eq!(
            call(&t, &e, "GET", "/job-templates", Value::Null)["jobTemplates"][0]["jobTemplateId"],
            "tpl"
        );
        let job = json!({"targets": [thing_arn("core")], "jobTemplateArn": "arn:aws:iot:us-east-1:123456789012:jobtemplate/tpl"});
        assert_eq!(call(&t, &e, "PUT", "/jobs/from-tpl", job).status, 200);
        let doc = e
            .world()
            .with_jobs(|j| j.job("from-tpl").map(|job| job.document.clone()));
        assert_eq!(doc, Some(json!({"operation": "echo"})));
        assert_eq!(
            call(&t, &e, "DELETE", "/job-templates/tpl", Value::Null).status,
            200
        );
        assert_eq!(
            call(&t, &e, "GET", "/job-templates/tpl", Value::Null).status,
            404
        );
    }

    #[test]
    fn managed_templates_take_document_parameters() {
        let e = emulator();
        let t = TemplateRoutes::default();
        let r = call(&t, &e, "GET", "/managed-job-templates", Value::Null);
        let names: Vec<&str> = r["managedJobTemplates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["templateName"].as_str())
            .collect();
        assert!(names.contains(&"AWS-Restart-Application"), "{names:?}");
        let r = call(
            &t,
            &e,
            "GET",
            "/managed-job-templates/AWS-Restart-Application",
            Value::Null,
        );
        assert_eq!(
            r["templateArn"],
            "arn:aws:iot:us-east-1::jobtemplate/AWS-Restart-Application:1.0"
        );
        assert!(r["documentParameters"]
            .as_array()
            .is_some_and(|p| !p.is_empty()));
        let arn = "arn:aws:iot:us-east-1::jobtemplate/AWS-Restart-Application:1.0";
        let job = json!({"targets": [thing_arn("core")], "jobTemplateArn": arn, "documentParameters": {"services": "nginx"}});
        assert_eq!(call(&t, &e, "PUT", "/jobs/restart", job).status, 200);
        let doc = e
            .world()
            .with_jobs(|j| j.job("restart").map(|job| job.document.to_string()));
        assert!(doc.is_some_and(|d| d.contains("nginx") && !d.contains("${aws:iot:parameter:")));
        let unknown = json!({"targets": [thing_arn("core")], "jobTemplateArn": arn, "documentParameters": {"services": "x", "bogus": "y"}});
        assert_eq!(
            call(&t, &e, "PUT", "/jobs/bad", unknown).error_type,
            Some("InvalidRequestException")
        );
        let missing = json!({"targets": [thing_arn("core")], "jobTemplateArn": arn});
        assert_eq!(
            call(&t, &e, "PUT", "/jobs/bad", missing).error_type,
            Some("InvalidRequestException")
        );
        let plain = Request::new("PUT", "/jobs/plain", "", br#"{"document": "{}"}"#);
        assert!(
            t.handle(e.world(), &plain).is_none(),
            "plain CreateJob is not a template call"
        );
    }

    #[test]
    fn a_custom_template_gives_its_presigned_url_config_to_its_jobs() {
        let e = emulator();
        let t = TemplateRoutes::default();
        let document =
            json!({"url": "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/b/k}"}).to_string();
        let role = "arn:aws:iam::123456789012:role/presign";
        let config = json!({"roleArn": role, "expiresInSec": 120});
        let r = call(
            &t,
            &e,
            "PUT",
            "/job-templates/signed",
            json!({"document": document, "presignedUrlConfig": config}),
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            call(
                &t,
                &e,
                "PUT",
                "/job-templates/unsigned",
                json!({"document": document})
            )
            .status,
            200
        );
        assert_eq!(
            call(&t, &e, "GET", "/job-templates/signed", Value::Null)["presignedUrlConfig"],
            config
        );
        let arn = |id: &str| format!("arn:aws:iot:us-east-1:123456789012:jobtemplate/{id}");
        let job = json!({"targets": [thing_arn("core")], "jobTemplateArn": arn("signed")});
        assert_eq!(call(&t, &e, "PUT", "/jobs/from-signed", job).status, 200);
        let given = e.world().with_jobs(|j| {
            j.job("from-signed")
                .and_then(|job| job.presigned_url.clone())
        });
        assert_eq!(given.and_then(|p| p.expires_in_sec), Some(120));
        // The job's own config wins over the template's.
        let own = json!({"targets": [thing_arn("core")], "jobTemplateArn": arn("signed"),
                         "presignedUrlConfig": {"roleArn": role, "expiresInSec": 60}});
        assert_eq!(call(&t, &e, "PUT", "/jobs/own", own).status, 200);
        let given = e
            .world()
            .with_jobs(|j| j.job("own").and_then(|job| job.presigned_url.clone()));
        assert_eq!(given.and_then(|p| p.expires_in_sec), Some(60));
        // Neither the template nor the job names a role: refused.
        let job = json!({"targets": [thing_arn("core")], "jobTemplateArn": arn("unsigned")});
        let r = call(&t, &e, "PUT", "/jobs/from-unsigned", job);
        assert_eq!(r.error_type, Some("InvalidRequestException"));
    }
}
