//! Job templates: the account's own (CreateJobTemplate, DescribeJobTemplate, ListJobTemplates,
//! DeleteJobTemplate), the AWS managed templates (DescribeManagedJobTemplate,
//! ListManagedJobTemplates), and the document a CreateJob with `jobTemplateArn` and
//! `documentParameters` gets.
//!
//! Owns: template state (a custom template's `presignedUrlConfig` included), the managed
//! templates' documents and parameters, and substituting
//! `${aws:iot:parameter:NAME}` with the service's refusals (parameters with a custom template,
//! unknown parameters, missing required ones). Must not know: HTTP, the Jobs service's
//! executions, or presigned URLs (substituted when a device reads a document, see
//! [`super::s3`]).
//!
//! Sans-IO: time comes in as epoch milliseconds; listings are ordered by id or name.
//!
//! What the service does and this emulation follows: managed ARNs have no account id
//! (`arn:aws:iot:<region>::jobtemplate/<name>:<version>`); `documentParameters` are accepted
//! only with managed templates. Where the service's behaviour is not documented the emulation
//! chooses: an optional parameter left unset is replaced by an empty string (a Device Client
//! agent reads an empty `runAsUser` as its own user and an empty `path` as its handler
//! directory), and a value is checked for its length and control characters, not against the
//! parameter's regex, which is reported by Describe for information.

use super::jobs_service::{ControlError, PresignedUrlConfig};
use std::collections::BTreeMap;

/// The largest job document the service accepts (characters).
pub const MAX_DOCUMENT_CHARS: usize = 32_768;
/// The version of every AWS managed template.
pub const MANAGED_VERSION: &str = "1.0";
const PARAMETER_PREFIX: &str = "${aws:iot:parameter:";

fn error(code: &'static str, message: impl Into<String>) -> ControlError {
    ControlError {
        code,
        message: message.into(),
    }
}

/// A parameter of a managed template (API `DocumentParameter`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentParameter {
    pub key: &'static str,
    pub description: &'static str,
    pub regex: &'static str,
    pub example: &'static str,
    pub optional: bool,
    /// Longest accepted value (characters).
    pub max_len: usize,
}

/// An AWS managed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedTemplate {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub environments: &'static [&'static str],
    pub parameters: Vec<DocumentParameter>,
    /// The document, with `${aws:iot:parameter:NAME}` placeholders.
    pub document: String,
}

impl ManagedTemplate {
    pub fn arn(&self, region: &str) -> String {
        format!(
            "arn:aws:iot:{region}::jobtemplate/{}:{}",
            self.name, self.version
        )
    }
}

const RUN_AS_USER: DocumentParameter = DocumentParameter {
    key: "runAsUser",
    description: "The user the step runs as; unset: the agent's own user.",
    regex: "[.\\s\\S]{0,256}",
    example: "user1",
    optional: true,
    max_len: 256,
};
const PATH_TO_HANDLER: DocumentParameter = DocumentParameter {
    key: "pathToHandler",
    description: "Where the handler is; unset or \"default\": the agent's handler directory.",
    regex: "[.\\s\\S]{0,4096}",
    example: "default",
    optional: true,
    max_len: 4096,
};

fn required(
    key: &'static str,
    description: &'static str,
    example: &'static str,
) -> DocumentParameter {
    DocumentParameter {
        key,
        description,
        regex: "[.\\s\\S]{1,1024}",
        example,
        optional: false,
        max_len: 1024,
    }
}

fn handler_document(step: &str, handler: &str, args: &[&str]) -> String {
    let args: Vec<String> = args
        .iter()
        .map(|a| format!("{PARAMETER_PREFIX}{a}}}"))
        .collect();
    serde_json::json!({
        "version": "1.0",
        "steps": [{"action": {
            "name": step,
            "type": "runHandler",
            "input": {"handler": handler, "args": args, "path": "${aws:iot:parameter:pathToHandler}"},
            "runAsUser": "${aws:iot:parameter:runAsUser}"
        }}]
    })
    .to_string()
}

/// The AWS managed templates, ordered by name.
pub fn managed_templates() -> Vec<ManagedTemplate> {
    let handler = |name: &'static str,
                   description: &'static str,
                   step: &str,
                   file: &str,
                   args: Vec<DocumentParameter>| {
        let keys: Vec<&str> = args.iter().map(|p| p.key).collect();
        let document = handler_document(step, file, &keys);
        let mut parameters = args;
        parameters.extend([RUN_AS_USER, PATH_TO_HANDLER]);
        ManagedTemplate {
            name,
            version: MANAGED_VERSION,
            description,
            environments: &["LINUX"],
            parameters,
            document,
        }
    };
    let packages = || {
        required(
            "packages",
            "Space-separated names of the packages.",
            "nginx curl",
        )
    };
    let services = || {
        required(
            "services",
            "Space-separated names of the services.",
            "nginx",
        )
    };
    let mut all = vec![
        handler(
            "AWS-Download-File",
            "Downloads a file to the device.",
            "Download-File",
            "download-file.sh",
            vec![
                required(
                    "downloadUrl",
                    "URL of the file (an S3 presigned-URL placeholder).",
                    "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/bucket/key}",
                ),
                required(
                    "filePath",
                    "Where on the device the file goes.",
                    "/tmp/file",
                ),
            ],
        ),
        handler(
            "AWS-Install-Application",
            "Installs packages on the device.",
            "Install-Application",
            "install-packages.sh",
            vec![packages()],
        ),
        handler(
            "AWS-Reboot",
            "Reboots the device.",
            "Reboot",
            "reboot.sh",
            vec![],
        ),
        handler(
            "AWS-Remove-Application",
            "Removes packages from the device.",
            "Remove-Application",
            "remove-packages.sh",
            vec![packages()],
        ),
        handler(
            "AWS-Restart-Application",
            "Restarts services on the device.",
            "Restart-Application",
            "restart-services.sh",
            vec![services()],
        ),
        handler(
            "AWS-Start-Application",
            "Starts services on the device.",
            "Start-Application",
            "start-services.sh",
            vec![services()],
        ),
        handler(
            "AWS-Stop-Application",
            "Stops services on the device.",
            "Stop-Application",
            "stop-services.sh",
            vec![services()],
        ),
    ];
    all.push(ManagedTemplate {
        name: "AWS-Run-Command",
        version: MANAGED_VERSION,
        description: "Runs a command on the device.",
        environments: &["LINUX"],
        parameters: vec![
            required(
                "command",
                "The command: comma-separated program and arguments.",
                "ls,-l",
            ),
            RUN_AS_USER,
        ],
        document: serde_json::json!({
            "version": "1.0",
            "steps": [{"action": {
                "name": "Run-Command",
                "type": "runCommand",
                "input": {"command": "${aws:iot:parameter:command}"},
                "runAsUser": "${aws:iot:parameter:runAsUser}"
            }}]
        })
        .to_string(),
    });
    all.sort_by(|a, b| a.name.cmp(b.name));
    all
}

/// An account's own template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTemplate {
    pub id: String,
    pub arn: String,
    pub description: String,
    pub document: String,
    /// Given to jobs created from the template that set none themselves.
    pub presigned_url: Option<PresignedUrlConfig>,
    pub created_at_ms: u64,
}

/// What CreateJobTemplate takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewJobTemplate {
    pub job_template_id: String,
    pub description: String,
    pub document: String,
    pub presigned_url: Option<PresignedUrlConfig>,
}

/// The templates of one account and region.
#[derive(Debug, Clone)]
pub struct JobTemplates {
    region: String,
    account: String,
    custom: BTreeMap<String, JobTemplate>,
    managed: Vec<ManagedTemplate>,
}

impl JobTemplates {
    pub fn new(region: &str, account: &str) -> Self {
        Self {
            region: region.to_owned(),
            account: account.to_owned(),
            custom: BTreeMap::new(),
            managed: managed_templates(),
        }
    }

    /// CreateJobTemplate: the new template's ARN and id.
    pub fn create(
        &mut self,
        new: NewJobTemplate,
        now_ms: u64,
    ) -> Result<&JobTemplate, ControlError> {
        let id = new.job_template_id;
        let id_ok = (1..=64).contains(&id.len())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !id_ok {
            return Err(error(
                "InvalidRequestException",
                format!("jobTemplateId {id:?} must be 1 to 64 of [a-zA-Z0-9_-]"),
            ));
        }
        if new.description.chars().count() > 2028 {
            return Err(error(
                "InvalidRequestException",
                "description is longer than 2028 characters",
            ));
        }
        check_document(&new.document)?;
        if self.custom.contains_key(&id) {
            return Err(error(
                "ConflictException",
                format!("job template {id} already exists"),
            ));
        }
        let template = JobTemplate {
            arn: format!(
                "arn:aws:iot:{}:{}:jobtemplate/{id}",
                self.region, self.account
            ),
            id: id.clone(),
            description: new.description,
            document: new.document,
            presigned_url: new.presigned_url,
            created_at_ms: now_ms,
        };
        Ok(self.custom.entry(id).or_insert(template))
    }

    /// The account's template of ARN `arn`, if there is one.
    pub fn custom_by_arn(&self, arn: &str) -> Option<&JobTemplate> {
        let id = arn.rsplit_once(":jobtemplate/")?.1;
        self.custom.get(id).filter(|t| t.arn == arn)
    }

    /// DescribeJobTemplate.
    pub fn describe(&self, id: &str) -> Result<&JobTemplate, ControlError> {
        self.custom
            .get(id)
            .ok_or_else(|| not_found(&format!("job template {id}")))
    }

    /// ListJobTemplates: up to `max_results` (1–250) templates after `next_token` (an id),
    /// ordered by id, and the token of the next page.
    pub fn list(
        &self,
        max_results: usize,
        next_token: Option<&str>,
    ) -> (Vec<&JobTemplate>, Option<String>) {
        let max = max_results.clamp(1, 250);
        let mut page: Vec<&JobTemplate> = self
            .custom
            .values()
            .filter(|t| next_token.is_none_or(|after| t.id.as_str() > after))
            .take(max + 1)
            .collect();
        let next = (page.len() > max).then(|| {
            page.truncate(max);
            page[max - 1].id.clone()
        });
        (page, next)
    }

    /// DeleteJobTemplate.
    pub fn delete(&mut self, id: &str) -> Result<(), ControlError> {
        self.custom
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| not_found(&format!("job template {id}")))
    }

    /// DescribeManagedJobTemplate (`version` `None`: the latest).
    pub fn describe_managed(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<&ManagedTemplate, ControlError> {
        self.managed
            .iter()
            .find(|t| t.name == name && version.is_none_or(|v| v == t.version))
            .ok_or_else(|| not_found(&format!("managed job template {name}")))
    }

    /// ListManagedJobTemplates, ordered by name (`template_name` filters to one).
    pub fn list_managed(&self, template_name: Option<&str>) -> Vec<&ManagedTemplate> {
        self.managed
            .iter()
            .filter(|t| template_name.is_none_or(|n| n == t.name))
            .collect()
    }

    /// The ARN of a managed template in this region.
    pub fn managed_arn(&self, template: &ManagedTemplate) -> String {
        template.arn(&self.region)
    }

    /// The document of a CreateJob with `jobTemplateArn` and `documentParameters`.
    pub fn document_for_job(
        &self,
        template_arn: &str,
        parameters: &BTreeMap<String, String>,
    ) -> Result<String, ControlError> {
        let Some(resource) = template_arn
            .strip_prefix("arn:aws:iot:")
            .and_then(|rest| rest.split_once(":jobtemplate/"))
        else {
            return Err(error(
                "InvalidRequestException",
                format!("{template_arn:?} is not a job template ARN"),
            ));
        };
        let (region_account, name) = resource;
        if let Some(region) = region_account.strip_suffix(':') {
            // No account: an AWS managed template, `<name>:<version>`.
            let (name, version) = name.split_once(':').unwrap_or((name, MANAGED_VERSION));
            if region != self.region {
                return Err(not_found(&format!("managed job template {template_arn}")));
            }
            let template = self.describe_managed(name, Some(version))?;
            return substitute(template, parameters);
        }
        let template = self
            .custom
            .get(name)
            .filter(|t| t.arn == template_arn)
            .ok_or_else(|| not_found(&format!("job template {template_arn}")))?;
        if !parameters.is_empty() {
            return Err(error(
                "InvalidRequestException",
                "documentParameters can only be used with AWS managed job templates",
            ));
        }
        Ok(template.document.clone())
    }
}

fn not_found(what: &str) -> ControlError {
    error(
        "ResourceNotFoundException",
        format!("{what} does not exist"),
    )
}

fn check_document(document: &str) -> Result<(), ControlError> {
    if document.chars().count() > MAX_DOCUMENT_CHARS {
        return Err(error(
            "InvalidRequestException",
            format!("the document is longer than {MAX_DOCUMENT_CHARS} characters"),
        ));
    }
    if serde_json::from_str::<serde_json::Value>(document).is_err() {
        return Err(error(
            "InvalidRequestException",
            "the document is not valid JSON",
        ));
    }
    Ok(())
}

/// The managed template's document with every `${aws:iot:parameter:NAME}` replaced.
pub fn substitute(
    template: &ManagedTemplate,
    parameters: &BTreeMap<String, String>,
) -> Result<String, ControlError> {
    for key in parameters.keys() {
        if !template.parameters.iter().any(|p| p.key == key) {
            return Err(error(
                "InvalidRequestException",
                format!(
                    "documentParameters has {key:?}, which {} does not take",
                    template.name
                ),
            ));
        }
    }
    let mut document = template.document.clone();
    for p in &template.parameters {
        let value = match parameters.get(p.key) {
            Some(v) if v.is_empty() && !p.optional => None,
            Some(v) => Some(v.as_str()),
            None if p.optional => Some(""),
            None => None,
        };
        let Some(value) = value else {
            return Err(error(
                "InvalidRequestException",
                format!(
                    "documentParameters lacks {:?}, which {} requires",
                    p.key, template.name
                ),
            ));
        };
        if value.chars().count() > p.max_len || value.chars().any(char::is_control) {
            return Err(error(
                "InvalidRequestException",
                format!(
                    "documentParameters {:?} must be at most {} characters without control characters",
                    p.key, p.max_len
                ),
            ));
        }
        // The placeholders sit inside JSON strings: insert the value JSON-escaped.
        let quoted = serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_owned());
        let escaped = &quoted[1..quoted.len() - 1];
        document = document.replace(&format!("{PARAMETER_PREFIX}{}}}", p.key), escaped);
    }
    check_document(&document)?;
    Ok(document)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn managed_templates_are_listed_by_name_with_their_documents() {
        let t = JobTemplates::new("eu-west-1", "123456789012");
        let names: Vec<&str> = t.list_managed(None).iter().map(|m| m.name).collect();
        assert_eq!(
            names,
            [
                "AWS-Download-File",
                "AWS-Install-Application",
                "AWS-Reboot",
                "AWS-Remove-Application",
                "AWS-Restart-Application",
                "AWS-Run-Command",
                "AWS-Start-Application",
                "AWS-Stop-Application"
            ]
        );
        let install = t.describe_managed("AWS-Install-Application", None).unwrap();
        assert_eq!(
            t.managed_arn(install),
            "arn:aws:iot:eu-west-1::jobtemplate/AWS-Install-Application:1.0"
        );
        let doc: Value = serde_json::from_str(&install.document).unwrap();
        assert_eq!(
            doc["steps"][0]["action"]["input"]["args"],
            json!(["${aws:iot:parameter:packages}"])
        );
        assert!(t.describe_managed("AWS-Teleport", None).is_err());
        assert!(t.describe_managed("AWS-Reboot", Some("2.0")).is_err());
    }

    #[test]
    fn create_job_documents_substitute_parameters_as_the_service_does() {
        let t = JobTemplates::new("us-east-1", "123456789012");
        let arn = "arn:aws:iot:us-east-1::jobtemplate/AWS-Install-Application:1.0";
        let doc = t
            .document_for_job(arn, &params(&[("packages", "lftp \"dos2unix\"")]))
            .unwrap();
        let doc: Value = serde_json::from_str(&doc).unwrap();
        let action = &doc["steps"][0]["action"];
        assert_eq!(action["input"]["args"], json!(["lftp \"dos2unix\""]));
        assert_eq!(action["input"]["path"], "", "unset optional: empty");
        assert_eq!(action["runAsUser"], "");
        assert_eq!(action["input"]["handler"], "install-packages.sh");
        let with_user = t
            .document_for_job(
                arn,
                &params(&[
                    ("packages", "a"),
                    ("runAsUser", "svc"),
                    ("pathToHandler", "apps"),
                ]),
            )
            .unwrap();
        let with_user: Value = serde_json::from_str(&with_user).unwrap();
        assert_eq!(with_user["steps"][0]["action"]["runAsUser"], "svc");
        assert_eq!(with_user["steps"][0]["action"]["input"]["path"], "apps");
        // Refusals.
        for (bad, why) in [
            (params(&[]), "lacks"),
            (params(&[("packages", "")]), "lacks"),
            (
                params(&[("packages", "a"), ("color", "red")]),
                "does not take",
            ),
            (params(&[("packages", "a\nb")]), "control"),
        ] {
            let e = t.document_for_job(arn, &bad).unwrap_err();
            assert_eq!(e.code, "InvalidRequestException");
            assert!(e.message.contains(why), "{e}");
        }
        let e = t
            .document_for_job(
                "arn:aws:iot:us-east-1::jobtemplate/AWS-Nope:1.0",
                &params(&[]),
            )
            .unwrap_err();
        assert_eq!(e.code, "ResourceNotFoundException");
        let run = t
            .document_for_job(
                "arn:aws:iot:us-east-1::jobtemplate/AWS-Run-Command:1.0",
                &params(&[("command", "/usr/bin/uptime,-p")]),
            )
            .unwrap();
        let run: Value = serde_json::from_str(&run).unwrap();
        assert_eq!(
            run["steps"][0]["action"]["input"]["command"],
            "/usr/bin/uptime,-p"
        );
        assert!(t
            .document_for_job(
                "arn:aws:iot:us-east-1::jobtemplate/AWS-Run-Command:1.0",
                &params(&[("command", "x"), ("pathToHandler", "p")]),
            )
            .is_err());
    }

    #[test]
    fn custom_templates_are_created_listed_and_deleted() {
        let mut t = JobTemplates::new("us-east-1", "123456789012");
        let doc = r#"{"operation": "echo"}"#;
        let arn = t
            .create(
                NewJobTemplate {
                    job_template_id: "echo".into(),
                    description: "d".into(),
                    document: doc.into(),
                    ..NewJobTemplate::default()
                },
                5,
            )
            .unwrap()
            .arn
            .clone();
        assert_eq!(arn, "arn:aws:iot:us-east-1:123456789012:jobtemplate/echo");
        for id in ["b", "c"] {
            t.create(
                NewJobTemplate {
                    job_template_id: id.into(),
                    document: doc.into(),
                    ..NewJobTemplate::default()
                },
                6,
            )
            .unwrap();
        }
        let dup = t
            .create(
                NewJobTemplate {
                    job_template_id: "echo".into(),
                    document: doc.into(),
                    ..NewJobTemplate::default()
                },
                7,
            )
            .unwrap_err();
        assert_eq!(dup.code, "ConflictException");
        for (id, document) in [("bad id", doc), ("x", "not json")] {
            let e = t
                .create(
                    NewJobTemplate {
                        job_template_id: id.into(),
                        document: document.into(),
                        ..NewJobTemplate::default()
                    },
                    7,
                )
                .unwrap_err();
            assert_eq!(e.code, "InvalidRequestException");
        }
        assert_eq!(t.describe("echo").unwrap().created_at_ms, 5);
        let (page, next) = t.list(2, None);
        assert_eq!(
            page.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
        let (page, next) = t.list(2, next.as_deref());
        assert_eq!((page.len(), next), (1, None));
        assert_eq!(t.document_for_job(&arn, &params(&[])).unwrap(), doc);
        let e = t
            .document_for_job(&arn, &params(&[("a", "b")]))
            .unwrap_err();
        assert!(e.message.contains("managed"), "{e}");
        t.delete("echo").unwrap();
        assert_eq!(
            t.describe("echo").unwrap_err().code,
            "ResourceNotFoundException"
        );
        assert!(t.delete("echo").is_err());
        assert!(t.document_for_job(&arn, &params(&[])).is_err());
    }
}
