//! The retry schedule: when a failed row is tried again, and what an outcome leaves on
//! its row and its target (the table of `docs/webhooks.md`).

use std::time::Duration;

use uuid::Uuid;

use super::{Attempted, Outcome};
use crate::domain::vocab::{ChannelKind, OutboxState};
use crate::store::outbox::{Completion, OutboxRow};

/// When the retry after `failures` consecutive failures (counted before this one) is
/// due: `now` plus the schedule's entry for it, stretched by `jitter` (a fraction in
/// 0..=0.1) when the wait is a second or more, so that the retries of a burst do not
/// all fall due in the same millisecond. None: the schedule is exhausted.
pub fn retry_at(schedule: &[Duration], failures: i64, now: i64, jitter: f64) -> Option<i64> {
    let wait = schedule.get(usize::try_from(failures).ok()?)?;
    let ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
    let extra = if ms >= 1_000 { (ms as f64 * jitter.clamp(0.0, 0.1)) as i64 } else { 0 };
    Some(now.saturating_add(ms).saturating_add(extra))
}

/// A random jitter for [`retry_at`] (0 to 10 %).
pub fn random_jitter() -> f64 {
    rand::Rng::gen_range(&mut rand::thread_rng(), 0.0..=0.1)
}

/// What recording an outcome does.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The row's new state (None: the row is deleted, its target being gone).
    pub completion: Option<Completion>,
    /// The attempt to log (None when nothing was sent).
    pub attempted: Option<Attempted>,
    /// Disable the row's target, with this reason.
    pub disable: Option<String>,
}

/// The rules: Delivered → Delivered; Retry → Pending on the schedule, or once it is
/// exhausted Failed and the target disabled; Gone → Paused and the target disabled;
/// Fail → Failed; Skip → Skipped; TargetMissing → deleted. Emails have no target to
/// disable.
pub fn decide(row: &OutboxRow, outcome: Outcome, schedule: &[Duration], now: i64, jitter: f64) -> Decision {
    let done = |state: OutboxState, a: &Attempted| Completion {
        state,
        failures: row.failures,
        next_attempt_at: now,
        last_status: a.status.map(i64::from),
        last_error: a.error.clone(),
    };
    let has_target = row.target_id.is_some() && row.channel != ChannelKind::Email;
    match outcome {
        Outcome::Delivered(a) => Decision {
            completion: Some(Completion { failures: 0, ..done(OutboxState::Delivered, &a) }),
            attempted: Some(a),
            disable: None,
        },
        Outcome::Retry(a) => match retry_at(schedule, row.failures, now, jitter) {
            Some(at) => Decision {
                completion: Some(Completion {
                    failures: row.failures + 1,
                    next_attempt_at: at,
                    ..done(OutboxState::Pending, &a)
                }),
                attempted: Some(a),
                disable: None,
            },
            None => {
                let reason = format!("{} attempts failed in a row; last: {}", row.failures + 1, describe(&a));
                Decision {
                    completion: Some(Completion { failures: row.failures + 1, ..done(OutboxState::Failed, &a) }),
                    attempted: Some(a),
                    disable: has_target.then_some(reason),
                }
            }
        },
        Outcome::Gone(a) => Decision {
            completion: Some(done(OutboxState::Paused, &a)),
            attempted: Some(a),
            disable: has_target.then(|| "the endpoint answered 410 Gone".to_string()),
        },
        Outcome::Fail(a) => {
            Decision { completion: Some(done(OutboxState::Failed, &a)), attempted: Some(a), disable: None }
        }
        Outcome::Skip(reason) => Decision {
            completion: Some(Completion {
                state: OutboxState::Skipped,
                failures: row.failures,
                next_attempt_at: now,
                last_status: None,
                last_error: Some(reason),
            }),
            attempted: None,
            disable: None,
        },
        Outcome::TargetMissing => Decision { completion: None, attempted: None, disable: None },
    }
}

/// `HTTP 503`, or the error, for a disable reason.
fn describe(a: &Attempted) -> String {
    match (a.status, &a.error) {
        (Some(s), _) => format!("HTTP {s}"),
        (None, Some(e)) => e.clone(),
        (None, None) => "no answer".into(),
    }
}

/// The pseudo-target every email counts against: the one SMTP relay, which is sent at
/// most `max_in_flight_per_target` messages at once, like any webhook endpoint.
pub const SMTP_RELAY: Uuid = Uuid::nil();

/// The target whose in-flight attempts a row counts against.
pub fn target_of(row: &OutboxRow) -> Option<Uuid> {
    match row.channel {
        ChannelKind::Email => Some(SMTP_RELAY),
        _ => row.target_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_retry_schedule, DEFAULT_RETRY_SCHEDULE};
    use crate::domain::ids::SpotId;

    fn row(failures: i64, channel: ChannelKind) -> OutboxRow {
        OutboxRow {
            spot_id: SpotId::generate(),
            id: Uuid::now_v7(),
            event_id: Uuid::now_v7(),
            channel,
            target_id: (channel != ChannelKind::Email).then(Uuid::now_v7),
            event_type: "member.created".into(),
            payload: "{}".into(),
            occurred_at: 0,
            state: OutboxState::Pending,
            attempts: failures,
            failures,
            next_attempt_at: 0,
            claimed_by: None,
            claim_token: None,
            last_status: None,
            last_error: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn failed(status: u16) -> Attempted {
        Attempted { status: Some(status), duration_ms: 3, response: None, error: None }
    }

    #[test]
    fn the_default_schedule_waits_5s_5m_30m_2h_5h_10h_then_gives_up() {
        let s = parse_retry_schedule(DEFAULT_RETRY_SCHEDULE).unwrap();
        let waits: Vec<i64> = (0..6).map(|f| retry_at(&s, f, 1_000, 0.0).unwrap() - 1_000).collect();
        assert_eq!(waits, vec![5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000]);
        assert_eq!(retry_at(&s, 6, 1_000, 0.0), None);
        assert_eq!(retry_at(&s, -1, 1_000, 0.0), None);
        assert_eq!(retry_at(&[], 0, 1_000, 0.0), None);
    }

    #[test]
    fn jitter_stretches_long_waits_by_at_most_ten_percent() {
        let s = vec![Duration::from_millis(50), Duration::from_secs(10)];
        assert_eq!(retry_at(&s, 0, 0, 0.1), Some(50), "sub-second waits are exact (tests rely on it)");
        assert_eq!(retry_at(&s, 1, 0, 0.1), Some(11_000));
        assert_eq!(retry_at(&s, 1, 0, 0.5), Some(11_000), "clamped to 10 %");
        for _ in 0..100 {
            let at = retry_at(&s, 1, 0, random_jitter()).unwrap();
            assert!((10_000..=11_000).contains(&at));
        }
    }

    #[test]
    fn outcomes_move_rows_and_targets_as_the_table_says() {
        let s = vec![Duration::from_millis(50), Duration::from_millis(100)];
        let ok = Attempted { status: Some(200), ..Attempted::default() };
        let d = decide(&row(1, ChannelKind::Webhook), Outcome::Delivered(ok.clone()), &s, 10, 0.0);
        let c = d.completion.unwrap();
        assert_eq!((c.state, c.failures, c.last_status), (OutboxState::Delivered, 0, Some(200)));
        assert_eq!(d.attempted, Some(ok));
        assert!(d.disable.is_none());

        let d = decide(&row(1, ChannelKind::Webhook), Outcome::Retry(failed(500)), &s, 10, 0.0);
        let c = d.completion.unwrap();
        assert_eq!((c.state, c.failures, c.next_attempt_at), (OutboxState::Pending, 2, 110));
        assert!(d.disable.is_none());

        let d = decide(&row(2, ChannelKind::Webhook), Outcome::Retry(failed(503)), &s, 10, 0.0);
        assert_eq!(d.completion.unwrap().state, OutboxState::Failed);
        assert_eq!(d.disable.as_deref(), Some("3 attempts failed in a row; last: HTTP 503"));

        let refused = Attempted { error: Some("connection refused".into()), ..Attempted::default() };
        let d = decide(&row(2, ChannelKind::Kaizala), Outcome::Retry(refused), &s, 10, 0.0);
        assert_eq!(d.disable.as_deref(), Some("3 attempts failed in a row; last: connection refused"));

        let d = decide(&row(2, ChannelKind::Email), Outcome::Retry(failed(421)), &s, 10, 0.0);
        assert_eq!(d.completion.unwrap().state, OutboxState::Failed);
        assert!(d.disable.is_none(), "an email has no target to disable");

        let d = decide(&row(0, ChannelKind::Webhook), Outcome::Gone(failed(410)), &s, 10, 0.0);
        assert_eq!(d.completion.unwrap().state, OutboxState::Paused);
        assert_eq!(d.disable.as_deref(), Some("the endpoint answered 410 Gone"));

        let d = decide(&row(0, ChannelKind::Email), Outcome::Fail(failed(550)), &s, 10, 0.0);
        assert_eq!(d.completion.unwrap().state, OutboxState::Failed);

        let d = decide(&row(0, ChannelKind::Email), Outcome::Skip("no relay".into()), &s, 10, 0.0);
        let c = d.completion.unwrap();
        assert_eq!((c.state, c.last_error.as_deref()), (OutboxState::Skipped, Some("no relay")));
        assert!(d.attempted.is_none());

        let d = decide(&row(0, ChannelKind::Webhook), Outcome::TargetMissing, &s, 10, 0.0);
        assert_eq!(d, Decision { completion: None, attempted: None, disable: None });
    }
}
