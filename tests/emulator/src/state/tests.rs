//! Property test: any sequence of client, runner and control operations keeps the state
//! consistent (statistics, runner/job links, one live session per scale set) and never panics.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use serde_json::Value;

use super::State;
use crate::config::EmulatorConfig;
use crate::model::{JobPhase, JobSpec, RunnerConnection, SessionState};

#[derive(Clone, Debug)]
enum Op {
    CreateScaleSet(u8),
    CreateSession(u8),
    QueueJob(u8),
    Poll(u8, bool),
    Ack(u8),
    Acquire(u8),
    Jit(u8),
    Connect(u8),
    Start(u8),
    Complete(u8),
    Disconnect(u8),
    Remove(u8),
    DeleteScaleSet(u8),
    ExpireSession(u8),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..2).prop_map(Op::CreateScaleSet),
        3 => (0u8..2).prop_map(Op::CreateSession),
        4 => (0u8..4).prop_map(Op::QueueJob),
        3 => (0u8..2, any::<bool>()).prop_map(|(s, l)| Op::Poll(s, l)),
        2 => (0u8..2).prop_map(Op::Ack),
        4 => (0u8..2).prop_map(Op::Acquire),
        4 => (0u8..2).prop_map(Op::Jit),
        4 => any::<u8>().prop_map(Op::Connect),
        4 => any::<u8>().prop_map(Op::Start),
        4 => any::<u8>().prop_map(Op::Complete),
        1 => any::<u8>().prop_map(Op::Disconnect),
        1 => any::<u8>().prop_map(Op::Remove),
        1 => (0u8..2).prop_map(Op::DeleteScaleSet),
        1 => (0u8..2).prop_map(Op::ExpireSession),
        2 => (0u16..200).prop_map(Op::Advance),
    ]
}

/// Element `k` modulo the length, so random indices hit existing items.
fn nth<T>(items: &[T], k: u8) -> Option<&T> {
    (!items.is_empty()).then(|| &items[usize::from(k) % items.len()])
}

#[derive(Default)]
struct Driver {
    scale_sets: BTreeMap<u8, i64>,
    sessions: BTreeMap<i64, String>,
    last_message: BTreeMap<i64, i64>,
    jits: Vec<(i64, String)>,
    conns: Vec<RunnerConnection>,
    runner_names: u32,
    connected: std::collections::BTreeSet<i64>,
}

fn check(st: &State, max_jobs: usize) {
    let snap = st.snapshot();
    for ss in &snap.scale_sets {
        let s = ss.statistics;
        assert!(s.total_assigned_jobs >= s.total_running_jobs, "{s:?}");
        assert_eq!(
            s.total_registered_runners,
            s.total_busy_runners + s.total_idle_runners
        );
        let live = snap
            .sessions
            .iter()
            .filter(|x| x.scale_set_id == ss.id && x.state == SessionState::Active)
            .count();
        assert!(live <= 1, "{live} active sessions on {}", ss.id);
    }
    for r in &snap.runners {
        assert!(
            snap.scale_set(r.scale_set_id).is_some(),
            "runner of a deleted set"
        );
        if let Some(j) = r.job {
            let job = snap.job(j).unwrap();
            assert!(
                matches!(job.phase, JobPhase::PickedUp | JobPhase::Running),
                "{job:?}"
            );
            assert_eq!(job.runner_id, Some(r.id));
        }
    }
    for j in &snap.jobs {
        if matches!(j.phase, JobPhase::PickedUp | JobPhase::Running) {
            let r = snap
                .runners
                .iter()
                .find(|r| Some(r.id) == j.runner_id)
                .unwrap();
            assert_eq!(r.job, Some(j.id));
        }
        if j.phase != JobPhase::Queued && j.phase != JobPhase::Completed {
            assert!(
                j.scale_set_id.is_some_and(|s| snap.scale_set(s).is_some()),
                "{j:?}"
            );
        }
    }
    for q in st.queues.values() {
        for items in q.messages.values() {
            assert!(items.len() <= max_jobs);
        }
    }
}

fn apply(st: &mut State, d: &mut Driver, op: &Op, now: &mut DateTime<Utc>) {
    let labels = ["s0", "s1", "shared", "nobody"];
    match *op {
        Op::CreateScaleSet(i) => {
            let body = format!(
                r#"{{"name":"s{i}","labels":[{{"name":"s{i}"}},{{"name":"shared"}}],"RunnerSetting":{{}}}}"#
            );
            if let Ok(v) = st.create_scale_set(body.as_bytes(), *now) {
                d.scale_sets.insert(i, v["id"].as_i64().unwrap());
            }
        }
        Op::CreateSession(i) => {
            if let Some(&ss) = d.scale_sets.get(&i)
                && let Ok(v) = st.create_session(ss, br#"{"ownerName":"p"}"#, *now)
            {
                d.sessions
                    .insert(ss, v["sessionId"].as_str().unwrap().to_owned());
            }
        }
        Op::QueueJob(l) => {
            st.queue_job(JobSpec::with_labels([labels[usize::from(l)]]), *now);
        }
        Op::Poll(i, with_last) => {
            if let Some(ss) = d.scale_sets.get(&i)
                && let Some(sid) = d.sessions.get(ss)
            {
                let last = with_last.then(|| d.last_message.get(ss).copied()).flatten();
                if let Some(m) = st.next_message(sid, last) {
                    let body: Vec<Value> =
                        serde_json::from_str(m["body"].as_str().unwrap()).unwrap();
                    assert!(!body.is_empty());
                    assert!(m["statistics"].is_object());
                    d.last_message.insert(*ss, m["messageId"].as_i64().unwrap());
                }
            }
        }
        Op::Ack(i) => {
            if let Some(ss) = d.scale_sets.get(&i)
                && let (Some(sid), Some(m)) = (d.sessions.get(ss), d.last_message.get(ss))
            {
                let _ = st.delete_message(sid, *m);
            }
        }
        Op::Acquire(i) => {
            if let Some(&ss) = d.scale_sets.get(&i)
                && let Some(sid) = d.sessions.get(&ss)
            {
                let ids: Vec<i64> = st
                    .snapshot()
                    .jobs
                    .iter()
                    .filter(|j| j.scale_set_id == Some(ss))
                    .map(|j| j.id)
                    .chain([9_999_999])
                    .collect();
                let _ = st.acquire_jobs(ss, sid, &serde_json::to_vec(&ids).unwrap(), *now);
            }
        }
        Op::Jit(i) => {
            if let Some(&ss) = d.scale_sets.get(&i) {
                d.runner_names += 1;
                let body = format!(r#"{{"name":"r{}","workFolder":""}}"#, d.runner_names);
                if let Ok(v) = st.generate_jit(ss, body.as_bytes(), *now) {
                    d.jits.push((
                        v["runner"]["id"].as_i64().unwrap(),
                        v["encodedJITConfig"].as_str().unwrap().to_owned(),
                    ));
                }
            }
        }
        Op::Connect(k) => {
            if let Some((id, jit)) = nth(&d.jits, k).cloned() {
                let connected = st.runner_connect(&jit, *now);
                if let Ok(c) = connected {
                    assert!(d.connected.insert(id), "JIT config {id} worked twice");
                    d.conns.push(c);
                }
            }
        }
        Op::Start(k) => {
            if let Some(c) = nth(&d.conns, k) {
                let _ = st.runner_started(&c.runner_token, *now);
            }
        }
        Op::Complete(k) => {
            if let Some(c) = nth(&d.conns, k) {
                let _ = st.runner_completed(&c.runner_token, None, *now);
            }
        }
        Op::Disconnect(k) => {
            if let Some(c) = nth(&d.conns, k) {
                let _ = st.runner_disconnect(&c.runner_token, *now);
            }
        }
        Op::Remove(k) => {
            if let Some((id, _)) = nth(&d.jits, k) {
                let _ = st.remove_runner(*id);
            }
        }
        Op::DeleteScaleSet(i) => {
            if let Some(&ss) = d.scale_sets.get(&i) {
                let _ = st.delete_scale_set(ss, *now);
            }
        }
        Op::ExpireSession(i) => {
            if let Some(&ss) = d.scale_sets.get(&i) {
                st.expire_session(ss);
            }
        }
        Op::Advance(secs) => *now += TimeDelta::seconds(i64::from(secs)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn any_sequence_keeps_the_state_consistent(ops in proptest::collection::vec(op(), 1..80)) {
        let cfg = EmulatorConfig {
            max_jobs_per_message: 3,
            runner_pickup_timeout: std::time::Duration::from_secs(120),
            ..EmulatorConfig::default()
        };
        let mut st = State::new(cfg, "http://127.0.0.1:1".to_owned());
        let mut d = Driver::default();
        let mut now = Utc::now();
        for op in &ops {
            apply(&mut st, &mut d, op, &mut now);
            st.advance(now);
            check(&st, 3);
        }

    }
}
