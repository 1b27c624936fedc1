//! The faults a simulation injects, and the per-message decisions on each hop.
//!
//! Owns: the list of fault kinds ([`FaultKind::ALL`], the list RELIABILITY.md must match), the
//! rates of the faults on the hops between a device and IoT Core ([`HopFaults`]), and drawing
//! each message's fate from the simulation's one random generator ([`HopFaults::fate`]).
//! Must not know: the world, devices or the event queue (the simulation applies a fate; the
//! scenario schedules the faults that are not per message).

/// Every fault the simulation can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// A message between a device and IoT Core is lost (either way).
    Loss,
    /// A message is delivered twice.
    Duplication,
    /// Messages overtake each other (a random extra delay per message).
    Reordering,
    /// A message arrives long after it was sent, beyond the engine's response timeout.
    Delay,
    /// The core's connection drops and resumes with its persistent session.
    DropPersistentResume,
    /// The core's connection drops and comes back after the broker lost the session.
    DropSessionLost,
    /// The Jobs service answers a thing's next requests with RequestThrottled.
    ThrottleStorm,
    /// The account's Jobs request quota is exceeded for a while.
    RateQuotaStorm,
    /// The component is killed at any point and restarted; its journal survives.
    CrashRestart,
    /// The crash cuts the journal write in progress: the entry stays as it was.
    TornJournalWrite,
    /// The device's clock leaps forward.
    ClockJump,
    /// CancelJob (QUEUED executions only).
    CloudCancel,
    /// CancelJob with force (IN_PROGRESS executions too).
    CloudForceCancel,
    /// DeleteJobExecution with force.
    CloudDelete,
    /// jobExecutionsRetryConfig queues FAILED and TIMED_OUT executions again.
    Retries,
    /// In-progress timeouts end a running job in the cloud.
    CloudTimeout,
    /// Things join and leave the group of a continuous job.
    ContinuousMembership,
    /// Documents that are not ours (Greengrass deployments, unknown formats) in the queue.
    ForeignJobs,
    /// Documents of our forms that cannot run (rejected with a reason).
    MalformedDocuments,
}

impl FaultKind {
    pub const ALL: [FaultKind; 19] = [
        Self::Loss,
        Self::Duplication,
        Self::Reordering,
        Self::Delay,
        Self::DropPersistentResume,
        Self::DropSessionLost,
        Self::ThrottleStorm,
        Self::RateQuotaStorm,
        Self::CrashRestart,
        Self::TornJournalWrite,
        Self::ClockJump,
        Self::CloudCancel,
        Self::CloudForceCancel,
        Self::CloudDelete,
        Self::Retries,
        Self::CloudTimeout,
        Self::ContinuousMembership,
        Self::ForeignJobs,
        Self::MalformedDocuments,
    ];

    /// The name RELIABILITY.md lists the fault under.
    pub fn name(self) -> &'static str {
        match self {
            Self::Loss => "loss",
            Self::Duplication => "duplication",
            Self::Reordering => "reordering",
            Self::Delay => "delay",
            Self::DropPersistentResume => "drop-persistent-resume",
            Self::DropSessionLost => "drop-session-lost",
            Self::ThrottleStorm => "throttle-storm",
            Self::RateQuotaStorm => "rate-quota-storm",
            Self::CrashRestart => "crash-restart",
            Self::TornJournalWrite => "torn-journal-write",
            Self::ClockJump => "clock-jump",
            Self::CloudCancel => "cloud-cancel",
            Self::CloudForceCancel => "cloud-force-cancel",
            Self::CloudDelete => "cloud-delete",
            Self::Retries => "retries",
            Self::CloudTimeout => "cloud-timeout",
            Self::ContinuousMembership => "continuous-membership",
            Self::ForeignJobs => "foreign-jobs",
            Self::MalformedDocuments => "malformed-documents",
        }
    }
}

/// Fault rates on the hops between a device and IoT Core, per message, in parts per thousand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HopFaults {
    pub loss_per_mille: u32,
    pub duplicate_per_mille: u32,
    /// Up to this much extra delay per message (messages overtake each other).
    pub reorder_ms: u64,
    pub delay_per_mille: u32,
    /// A delayed message arrives up to this much later.
    pub delay_max_ms: u64,
}

/// What happens to one message: delivered after each of these extra delays (none: lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fate {
    pub extra_delays_ms: Vec<u64>,
    pub faults: Vec<FaultKind>,
}

impl HopFaults {
    /// Whether any fault is on.
    pub fn any(&self) -> bool {
        *self != Self::default()
    }

    fn hit(rng: &mut fastrand::Rng, per_mille: u32) -> bool {
        per_mille > 0 && rng.u32(0..1000) < per_mille
    }

    fn one_delay(&self, rng: &mut fastrand::Rng, faults: &mut Vec<FaultKind>) -> u64 {
        let mut delay = 0;
        if self.reorder_ms > 0 {
            let d = rng.u64(0..=self.reorder_ms);
            if d > 0 {
                faults.push(FaultKind::Reordering);
            }
            delay += d;
        }
        if self.delay_max_ms > 0 && Self::hit(rng, self.delay_per_mille) {
            faults.push(FaultKind::Delay);
            delay += rng.u64(1..=self.delay_max_ms);
        }
        delay
    }

    /// Draws one message's fate.
    pub fn fate(&self, rng: &mut fastrand::Rng) -> Fate {
        let mut faults = Vec::new();
        if !self.any() {
            return Fate {
                extra_delays_ms: vec![0],
                faults,
            };
        }
        if Self::hit(rng, self.loss_per_mille) {
            faults.push(FaultKind::Loss);
            return Fate {
                extra_delays_ms: Vec::new(),
                faults,
            };
        }
        let mut extra_delays_ms = vec![self.one_delay(rng, &mut faults)];
        if Self::hit(rng, self.duplicate_per_mille) {
            faults.push(FaultKind::Duplication);
            extra_delays_ms.push(self.one_delay(rng, &mut faults));
        }
        Fate {
            extra_delays_ms,
            faults,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_faults_deliver_once_at_once() {
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..100 {
            assert_eq!(HopFaults::default().fate(&mut rng).extra_delays_ms, vec![0]);
        }
    }

    #[test]
    fn rates_are_honoured_and_named() {
        let hop = HopFaults {
            loss_per_mille: 100,
            duplicate_per_mille: 100,
            reorder_ms: 50,
            delay_per_mille: 100,
            delay_max_ms: 20_000,
        };
        let mut rng = fastrand::Rng::with_seed(7);
        let (mut lost, mut doubled, mut late) = (0, 0, 0);
        for _ in 0..10_000 {
            let fate = hop.fate(&mut rng);
            match fate.extra_delays_ms.len() {
                0 => lost += 1,
                2 => doubled += 1,
                _ => {}
            }
            if fate.extra_delays_ms.iter().any(|d| *d > 50) {
                late += 1;
                assert!(fate.faults.contains(&FaultKind::Delay));
            }
        }
        assert!((800..1200).contains(&lost), "{lost}");
        assert!((700..1100).contains(&doubled), "{doubled}");
        assert!((800..1300).contains(&late), "{late}");
    }

    #[test]
    fn names_are_unique() {
        let names: std::collections::BTreeSet<_> =
            FaultKind::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), FaultKind::ALL.len());
    }
}
