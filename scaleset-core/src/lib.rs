//! Pure scaling decisions and lifecycle state machines for runner scale sets.
//!
//! Every decision the controller and the listener make lives here as a plain function or a state
//! machine over observed values. Nothing in this crate performs I/O, reads a clock or depends on
//! Kubernetes types: callers observe, call in, and carry out what is returned.
//!
//! | Module | Decides |
//! |---|---|
//! | [`autoscaling_runner_set`] | reconcile order (`ars_step`), scale set create/adopt/update/re-create, URL change refusal, version gate, spec rollout, deletion order |
//! | [`completions`] | which completed jobs the listener's count reflects: what it lists with each patch, and the creations a set holds back |
//! | [`desired`] | listener target count and `patchID` sequence |
//! | [`ephemeral_runner`] | runner lifecycle: pod states, retry budget, JIT re-registration, finalizer |
//! | [`backoff`] | the retry backoff (doubling to a cap, jitter drawn by the caller) |
//! | [`failure`] | what follows a failed reconcile (await an edit, retry in minutes, back off) and when a deletion gives up on its cleanup |
//! | [`listener_lifecycle`] | listener exit classes; AutoscalingListener reconcile order (`listener_step`); pod (re)creation with backoff by exit class |
//! | [`listener_policy`] | the listener's reaction to each failed call: retry, refresh or re-create the session, skip, exit |
//! | [`registrations`] | which runners GitHub's REST API lists belong to a set and have no EphemeralRunner behind them |
//! | [`naming`] | ARC listener name hash, derived names, label values, config URL parsing |
//! | [`pod`] | pod failure classification (cluster fault or workload fault) for runner and listener pods |
//! | [`runner_set`] | EphemeralRunnerSet creates, scale-down candidates, cleanup, status |
//! | [`time`] | the `Timestamp` value type used for all time inputs |

pub mod autoscaling_runner_set;
pub mod backoff;
pub mod completions;
pub mod desired;
pub mod ephemeral_runner;
pub mod failure;
pub mod listener_lifecycle;
pub mod listener_policy;
pub mod naming;
pub mod pod;
pub mod registrations;
pub mod runner_set;
pub mod time;
