//! Topic names of the AWS IoT Jobs MQTT API for one thing.
//!
//! Owns: building the topics a device publishes to and subscribes to, and recognising which
//! API response a received topic is. Must not know: payloads or what the engine does with them.

/// Every topic of the Jobs API of one thing: `$aws/things/<thing>/jobs/...`.
#[derive(Debug, Clone)]
pub struct JobsTopics {
    prefix: String,
}

/// Which response or notification a topic carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseTopic<'a> {
    NotifyNext,
    Notify,
    GetAccepted,
    GetRejected,
    StartNextAccepted,
    StartNextRejected,
    /// `{jobId}/get/accepted` (jobId may be `$next`).
    DescribeAccepted(&'a str),
    DescribeRejected(&'a str),
    UpdateAccepted(&'a str),
    UpdateRejected(&'a str),
}

impl JobsTopics {
    pub fn new(thing_name: &str) -> Self {
        Self {
            prefix: format!("$aws/things/{thing_name}/jobs/"),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn get(&self) -> String {
        format!("{}get", self.prefix)
    }

    pub fn start_next(&self) -> String {
        format!("{}start-next", self.prefix)
    }

    pub fn describe(&self, job_id: &str) -> String {
        format!("{}{job_id}/get", self.prefix)
    }

    pub fn update(&self, job_id: &str) -> String {
        format!("{}{job_id}/update", self.prefix)
    }

    pub fn notify_next(&self) -> String {
        format!("{}notify-next", self.prefix)
    }

    /// The filters a handler subscribes to (one SubscribeToIoTCore each). Wildcards in the
    /// jobId level cover `$next/get/...` and every `{jobId}/get|update/...`. `notify` is
    /// needed besides `notify-next`: when a foreign job (a deployment) heads the queue,
    /// notify-next stays silent about jobs queued behind it.
    pub fn subscriptions(&self) -> Vec<String> {
        let p = &self.prefix;
        vec![
            format!("{p}notify-next"),
            format!("{p}notify"),
            format!("{p}get/accepted"),
            format!("{p}get/rejected"),
            format!("{p}start-next/accepted"),
            format!("{p}start-next/rejected"),
            format!("{p}+/get/accepted"),
            format!("{p}+/get/rejected"),
            format!("{p}+/update/accepted"),
            format!("{p}+/update/rejected"),
        ]
    }

    /// Recognises a response topic of this thing; `None` for anything else.
    pub fn parse<'a>(&self, topic: &'a str) -> Option<ResponseTopic<'a>> {
        let rest = topic.strip_prefix(self.prefix.as_str())?;
        let levels: Vec<&'a str> = rest.split('/').collect();
        Some(match levels.as_slice() {
            ["notify-next"] => ResponseTopic::NotifyNext,
            ["notify"] => ResponseTopic::Notify,
            ["get", "accepted"] => ResponseTopic::GetAccepted,
            ["get", "rejected"] => ResponseTopic::GetRejected,
            ["start-next", "accepted"] => ResponseTopic::StartNextAccepted,
            ["start-next", "rejected"] => ResponseTopic::StartNextRejected,
            [job, "get", "accepted"] => ResponseTopic::DescribeAccepted(job),
            [job, "get", "rejected"] => ResponseTopic::DescribeRejected(job),
            [job, "update", "accepted"] => ResponseTopic::UpdateAccepted(job),
            [job, "update", "rejected"] => ResponseTopic::UpdateRejected(job),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses_topics() {
        let t = JobsTopics::new("dev-1");
        assert_eq!(t.get(), "$aws/things/dev-1/jobs/get");
        assert_eq!(t.update("j1"), "$aws/things/dev-1/jobs/j1/update");
        assert_eq!(
            t.parse("$aws/things/dev-1/jobs/notify-next"),
            Some(ResponseTopic::NotifyNext)
        );
        assert_eq!(
            t.parse("$aws/things/dev-1/jobs/$next/get/accepted"),
            Some(ResponseTopic::DescribeAccepted("$next"))
        );
        assert_eq!(
            t.parse("$aws/things/dev-1/jobs/j1/update/rejected"),
            Some(ResponseTopic::UpdateRejected("j1"))
        );
        assert_eq!(t.parse("$aws/things/dev-2/jobs/notify-next"), None);
        assert_eq!(
            t.parse("$aws/things/dev-1/jobs/j1/namespace-aws-gg-deployment/get/accepted"),
            None
        );
        for s in t.subscriptions() {
            assert!(crate::topic::validate_filter(&s).is_ok(), "{s}");
        }
    }
}
