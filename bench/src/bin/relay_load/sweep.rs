//! `--sweep`: the highest offered rate a relay carries with less than `--sweep-loss-pct` loss.
//!
//! Open loop, paced, over the allocations set up once. Each step offers a total rate for
//! `--sweep-step-seconds`, then stops sending for `--sweep-settle-ms` so that the backlog of an
//! overloaded step drains before the next one starts; a step's packets are the ones stamped
//! after its start, and a step's count is what came back before the end of its settle period.
//! The rate grows by `--sweep-factor` while steps pass; the first failure is refined by
//! `--sweep-refine` bisections (geometric) between the last pass and the lowest failure. If the
//! first step already fails, the sweep steps down by the factor instead.
//!
//! The main thread drives the steps through [`Control`]; the workers follow it, count each
//! step in a [`StepAcc`], and hand it in when asked.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::hist::Hist;
use crate::now_ns;

/// Sweep parameters (from the command line).
#[derive(Clone, Debug)]
pub struct Params {
    /// First offered rate, packets/s in all (client → peer).
    pub start_pps: f64,
    pub factor: f64,
    pub step: Duration,
    pub settle: Duration,
    pub warmup: Duration,
    /// Steps at most, refinement included (the warm-up is not a step).
    pub max_steps: usize,
    /// Bisections after the first failure.
    pub refine: usize,
    /// Loss (a fraction) at which a step fails.
    pub loss_limit: f64,
}

/// Packets with less than this share of their step's packets back before the step ended
/// mean the relay fell behind (its queues grew) even if they came back during the settle.
const MIN_IN_STEP: f64 = 0.9;
/// Sent below this share of the offered rate: the generator, not the relay, was the limit.
const MIN_SENT: f64 = 0.95;
/// How long the main thread waits for the workers to hand in a step.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What one worker counted during one step.
pub struct StepAcc {
    /// The step's start (ns since the run's epoch): packets stamped earlier are stragglers.
    pub start_ns: u64,
    /// When sending stopped (`u64::MAX` while it has not).
    pub send_end_ns: u64,
    pub sent: u64,
    pub received: u64,
    /// Received before sending stopped.
    pub received_in_step: u64,
    pub received_bytes: u64,
    /// Packets of earlier steps that came back during this one.
    pub stragglers: u64,
    pub gen_drops: u64,
    pub rtt: Hist,
}

impl StepAcc {
    pub fn new(start_ns: u64) -> Self {
        Self {
            start_ns,
            send_end_ns: u64::MAX,
            sent: 0,
            received: 0,
            received_in_step: 0,
            received_bytes: 0,
            stragglers: 0,
            gen_drops: 0,
            rtt: Hist::default(),
        }
    }

    /// A data packet stamped `t` came back at `now`.
    #[inline]
    pub fn on_received(&mut self, t: u64, now: u64, bytes: usize) {
        if t < self.start_ns {
            self.stragglers += 1;
            return;
        }
        self.received += 1;
        self.received_bytes += bytes as u64;
        if now < self.send_end_ns {
            self.received_in_step += 1;
        }
        self.rtt.record(now.saturating_sub(t));
    }

    fn merge(&mut self, o: &StepAcc) {
        self.sent += o.sent;
        self.received += o.received;
        self.received_in_step += o.received_in_step;
        self.received_bytes += o.received_bytes;
        self.stragglers += o.stragglers;
        self.gen_drops += o.gen_drops;
        self.rtt.merge(&o.rtt);
    }
}

/// Shared between the main thread (which writes the step) and the workers (which follow).
pub struct Control {
    /// Current step number, 1-based (0: none yet). Stored last, so a worker that sees a new
    /// number also sees the step's rate and start.
    step: AtomicUsize,
    /// Offered packets/s per ready allocation in the current step (f64 bits).
    rate_bits: AtomicU64,
    start_ns: AtomicU64,
    sending: AtomicBool,
    send_end_ns: AtomicU64,
    /// The step number whose counts the workers should hand in.
    collect: AtomicUsize,
    collected: AtomicUsize,
    /// Workers that follow the steps (registered before traffic starts).
    workers: AtomicUsize,
    acc: Mutex<Option<StepAcc>>,
}

/// What a worker must do now, read from [`Control`] once per loop turn.
pub struct Orders {
    /// The current step number (0: none yet).
    pub step: usize,
    /// Per-allocation rate to send at, if sending.
    pub rate: Option<f64>,
    pub start_ns: u64,
    pub send_end_ns: u64,
    /// Hand in the counts of `step` now.
    pub collect: bool,
}

impl Control {
    pub fn new() -> Self {
        Self {
            step: AtomicUsize::new(0),
            rate_bits: AtomicU64::new(0),
            start_ns: AtomicU64::new(0),
            sending: AtomicBool::new(false),
            send_end_ns: AtomicU64::new(u64::MAX),
            collect: AtomicUsize::new(0),
            collected: AtomicUsize::new(0),
            workers: AtomicUsize::new(0),
            acc: Mutex::new(None),
        }
    }

    /// A worker announces it will follow the steps (before the traffic barrier).
    pub fn register(&self) {
        self.workers.fetch_add(1, Ordering::SeqCst);
    }

    pub fn orders(&self) -> Orders {
        let step = self.step.load(Ordering::Acquire);
        let sending = step != 0 && self.sending.load(Ordering::Acquire);
        Orders {
            step,
            rate: sending.then(|| f64::from_bits(self.rate_bits.load(Ordering::Relaxed))),
            start_ns: self.start_ns.load(Ordering::Relaxed),
            send_end_ns: self.send_end_ns.load(Ordering::Acquire),
            collect: step != 0 && self.collect.load(Ordering::Acquire) == step,
        }
    }

    /// A worker hands in its counts of the step being collected.
    pub fn hand_in(&self, acc: &StepAcc) {
        let mut g = self.acc.lock().unwrap_or_else(|p| p.into_inner());
        match g.as_mut() {
            Some(total) => total.merge(acc),
            None => {
                let mut total = StepAcc::new(acc.start_ns);
                total.merge(acc);
                *g = Some(total);
            }
        }
        drop(g);
        self.collected.fetch_add(1, Ordering::AcqRel);
    }
}

/// Outside view of the run the sweep samples at step boundaries.
#[derive(Clone, Copy, Default)]
pub struct Probe {
    pub t_ns: u64,
    /// Server (or null relay) CPU ticks, if known.
    pub server_ticks: Option<u64>,
    /// Packets the built-in echo peer received so far (0 with an external peer).
    pub peer_rx: u64,
}

/// Verdict on one step.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Ok,
    /// Loss at or above the limit.
    Loss,
    /// Loss below the limit, but the packets came back late: queues were growing.
    Lagging,
    /// The generator could not offer the rate.
    Generator,
    /// Nothing was sent (no allocation ready, or the workers did not answer).
    Nothing,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Loss => "loss",
            Verdict::Lagging => "lagging",
            Verdict::Generator => "generator",
            Verdict::Nothing => "nothing sent",
        }
    }
}

/// The measured numbers of one step.
pub struct StepResult {
    pub offered_pps: f64,
    pub seconds: f64,
    pub sent: u64,
    pub received: u64,
    pub received_in_step: u64,
    pub received_bytes: u64,
    pub stragglers: u64,
    pub gen_drops: u64,
    pub rtt: Hist,
    pub peer_rx: Option<u64>,
    pub server_cpu_s: Option<f64>,
    pub verdict: Verdict,
}

impl StepResult {
    fn per_s(&self, n: u64) -> f64 {
        if self.seconds > 0.0 {
            n as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        1.0 - (self.received as f64 / self.sent as f64).min(1.0)
    }

    /// Packets back at the client per second of sending (the step's packets, whenever they
    /// came back within the settle period).
    pub fn delivered_pps(&self) -> f64 {
        self.per_s(self.received)
    }

    /// Both directions: what the echo peer got plus what came back.
    pub fn relayed_pps(&self) -> Option<f64> {
        self.peer_rx.map(|up| self.per_s(up + self.received))
    }

    fn to_json(&self) -> Value {
        let us = |ns: u64| ns as f64 / 1000.0;
        let relayed = self.peer_rx.map(|up| up + self.received).filter(|&r| r > 0);
        json!({
            "offered_pps": self.offered_pps,
            "seconds": self.seconds,
            "sent_pps": self.per_s(self.sent),
            "delivered_pps": self.delivered_pps(),
            "relayed_pps": self.relayed_pps(),
            "delivered_mbps": self.per_s(self.received_bytes) * 8.0 / 1e6,
            "sent": self.sent,
            "received": self.received,
            "received_in_step": self.received_in_step,
            "loss_pct": self.loss() * 100.0,
            "stragglers": self.stragglers,
            "generator_send_drops": self.gen_drops,
            "rtt_us": {
                "samples": self.rtt.count(),
                "p50": us(self.rtt.quantile(0.5)),
                "p99": us(self.rtt.quantile(0.99)),
                "p999": us(self.rtt.quantile(0.999)),
                "max": us(self.rtt.max()),
            },
            "server_cores": self.server_cpu_s.map(|c| if self.seconds > 0.0 { c / self.seconds } else { 0.0 }),
            "server_cpu_s_per_million": match (self.server_cpu_s, relayed) {
                (Some(c), Some(r)) => Some(c / (r as f64 / 1e6)),
                _ => None,
            },
            "verdict": self.verdict.as_str(),
        })
    }
}

/// Judges one step's counts.
pub fn judge(offered_pps: f64, seconds: f64, acc: &StepAcc, loss_limit: f64) -> Verdict {
    if acc.sent == 0 {
        return Verdict::Nothing;
    }
    let loss = 1.0 - (acc.received as f64 / acc.sent as f64).min(1.0);
    if loss >= loss_limit {
        return Verdict::Loss;
    }
    if seconds > 0.0 && (acc.sent as f64 / seconds) < MIN_SENT * offered_pps {
        return Verdict::Generator;
    }
    if (acc.received_in_step as f64) < MIN_IN_STEP * acc.sent as f64 {
        return Verdict::Lagging;
    }
    Verdict::Ok
}

/// Which rate to try next, from the verdicts so far.
#[derive(Debug)]
pub struct Planner {
    factor: f64,
    refine_left: usize,
    steps_left: usize,
    /// Offered rate of the next step.
    next: Option<f64>,
    /// Highest passing rate so far.
    pub best: Option<f64>,
    /// Lowest failing rate so far.
    pub lowest_fail: Option<f64>,
    /// Why it stopped.
    pub stop: Option<String>,
}

impl Planner {
    pub fn new(start: f64, factor: f64, refine: usize, max_steps: usize) -> Self {
        Self {
            factor,
            refine_left: refine,
            steps_left: max_steps,
            next: Some(start),
            best: None,
            lowest_fail: None,
            stop: None,
        }
    }

    /// The rate of the next step, or `None` when the sweep is over.
    pub fn next(&self) -> Option<f64> {
        if self.steps_left == 0 {
            return None;
        }
        self.next
    }

    /// Records the outcome of a step at `rate`.
    pub fn record(&mut self, rate: f64, passed: bool, floor: f64) {
        self.steps_left = self.steps_left.saturating_sub(1);
        if passed {
            self.best = Some(self.best.map_or(rate, |b| b.max(rate)));
        } else {
            self.lowest_fail = Some(self.lowest_fail.map_or(rate, |f| f.min(rate)));
        }
        self.next = match (self.best, self.lowest_fail) {
            // Still ramping up.
            (Some(b), None) => Some(b * self.factor),
            // Nothing passed yet: step down.
            (None, Some(f)) => {
                let down = f / self.factor;
                if down < floor {
                    self.stop = Some("no step passed down to the lowest rate".into());
                    None
                } else {
                    Some(down)
                }
            }
            (Some(b), Some(f)) => {
                if self.refine_left == 0 {
                    self.stop = Some("refined".into());
                    None
                } else {
                    self.refine_left -= 1;
                    Some((b * f).sqrt())
                }
            }
            (None, None) => None,
        };
        if self.steps_left == 0 && self.stop.is_none() {
            self.stop = Some("--sweep-max-steps reached".into());
        }
    }
}

/// The sweep's outcome.
pub struct Outcome {
    pub steps: Vec<StepResult>,
    pub best: Option<usize>,
    /// Verdict of the lowest failing step above the best one: what limited the rate.
    pub limit: Option<Verdict>,
    pub stop: String,
    pub warnings: Vec<String>,
}

impl Outcome {
    pub fn best_step(&self) -> Option<&StepResult> {
        self.best.map(|i| &self.steps[i])
    }

    pub fn to_json(&self, p: &Params) -> Value {
        let best = self.best_step();
        json!({
            "start_pps": p.start_pps,
            "factor": p.factor,
            "step_s": p.step.as_secs_f64(),
            "settle_ms": p.settle.as_millis() as u64,
            "warmup_s": p.warmup.as_secs_f64(),
            "max_steps": p.max_steps,
            "refine": p.refine,
            "loss_limit_pct": p.loss_limit * 100.0,
            "max_lossless_pps": best.map(|b| b.offered_pps),
            "max_lossless_delivered_pps": best.map(|b| b.delivered_pps()),
            "max_lossless_relayed_pps": best.and_then(|b| b.relayed_pps()),
            "max_lossless_step": self.best,
            "limit": self.limit.map(|v| v.as_str()),
            "stop": self.stop,
            "steps": self.steps.iter().map(StepResult::to_json).collect::<Vec<_>>(),
        })
    }
}

/// Runs the sweep from the main thread. `probe` samples the server's CPU and the echo peer.
pub fn drive(
    ctl: &Control,
    p: &Params,
    ready: u64,
    ticks_s: f64,
    probe: impl Fn() -> Probe,
) -> Outcome {
    let mut out = Outcome {
        steps: Vec::new(),
        best: None,
        limit: None,
        stop: String::new(),
        warnings: Vec::new(),
    };
    if ready == 0 {
        out.stop = "no allocation ready".into();
        return out;
    }
    let mut number = 0;
    if !p.warmup.is_zero() {
        number += 1;
        let _ = run_step(
            ctl,
            number,
            p.start_pps,
            p.warmup,
            p,
            ready,
            ticks_s,
            &probe,
        );
    }
    // Below one packet per second per allocation there is nothing left to measure.
    let floor = ready as f64;
    let mut plan = Planner::new(p.start_pps, p.factor, p.refine, p.max_steps);
    while let Some(rate) = plan.next() {
        number += 1;
        let (r, late) = run_step(ctl, number, rate, p.step, p, ready, ticks_s, &probe);
        if late {
            out.warnings.push(format!(
                "step {number}: not every worker handed in its counts within {COLLECT_TIMEOUT:?}"
            ));
        }
        plan.record(rate, r.verdict == Verdict::Ok, floor);
        out.steps.push(r);
    }
    out.stop = plan.stop.clone().unwrap_or_default();
    out.best = plan.best.and_then(|b| {
        out.steps
            .iter()
            .position(|s| s.verdict == Verdict::Ok && s.offered_pps == b)
    });
    if let Some(f) = plan.lowest_fail {
        out.limit = out
            .steps
            .iter()
            .find(|s| s.offered_pps == f && s.verdict != Verdict::Ok)
            .map(|s| s.verdict);
    }
    // Leave the workers idle: no step is current any more.
    ctl.sending.store(false, Ordering::Release);
    out
}

/// One step: send at `rate` for `dur`, stop, settle, collect. Returns the result and whether
/// collecting timed out.
#[allow(clippy::too_many_arguments)]
fn run_step(
    ctl: &Control,
    number: usize,
    rate: f64,
    dur: Duration,
    p: &Params,
    ready: u64,
    ticks_s: f64,
    probe: &impl Fn() -> Probe,
) -> (StepResult, bool) {
    *ctl.acc.lock().unwrap_or_else(|e| e.into_inner()) = None;
    ctl.collected.store(0, Ordering::SeqCst);
    ctl.rate_bits
        .store((rate / ready as f64).to_bits(), Ordering::Relaxed);
    ctl.send_end_ns.store(u64::MAX, Ordering::Release);
    let p0 = probe();
    ctl.start_ns.store(p0.t_ns, Ordering::Relaxed);
    ctl.sending.store(true, Ordering::Release);
    ctl.step.store(number, Ordering::Release);
    sleep_until(Instant::now() + dur);
    let end = now_ns();
    ctl.send_end_ns.store(end, Ordering::Release);
    ctl.sending.store(false, Ordering::Release);
    let p1 = probe();
    std::thread::sleep(p.settle);
    let p2 = probe();
    ctl.collect.store(number, Ordering::Release);
    let workers = ctl.workers.load(Ordering::SeqCst);
    let deadline = Instant::now() + COLLECT_TIMEOUT;
    let mut late = false;
    while ctl.collected.load(Ordering::Acquire) < workers {
        if Instant::now() > deadline {
            late = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let acc = ctl
        .acc
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_else(|| StepAcc::new(p0.t_ns));
    let seconds = end.saturating_sub(p0.t_ns) as f64 / 1e9;
    let verdict = judge(rate, seconds, &acc, p.loss_limit);
    let server_cpu_s = match (p0.server_ticks, p1.server_ticks) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / ticks_s),
        _ => None,
    };
    let peer_rx = (p2.peer_rx > 0 || p0.peer_rx > 0).then(|| p2.peer_rx.saturating_sub(p0.peer_rx));
    (
        StepResult {
            offered_pps: rate,
            seconds,
            sent: acc.sent,
            received: acc.received,
            received_in_step: acc.received_in_step,
            received_bytes: acc.received_bytes,
            stragglers: acc.stragglers,
            gen_drops: acc.gen_drops,
            rtt: acc.rtt,
            peer_rx,
            server_cpu_s,
            verdict,
        },
        late,
    )
}

fn sleep_until(t: Instant) {
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        std::thread::sleep((t - now).min(Duration::from_millis(10)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(sent: u64, received: u64, in_step: u64) -> StepAcc {
        StepAcc {
            sent,
            received,
            received_in_step: in_step,
            ..StepAcc::new(0)
        }
    }

    #[test]
    fn judge_applies_loss_lag_and_generator_limits() {
        assert_eq!(
            judge(1000.0, 1.0, &acc(1000, 1000, 999), 0.001),
            Verdict::Ok
        );
        assert_eq!(
            judge(1000.0, 1.0, &acc(1000, 999, 999), 0.001),
            Verdict::Loss
        );
        assert_eq!(
            judge(1000.0, 1.0, &acc(1000, 1000, 500), 0.001),
            Verdict::Lagging
        );
        assert_eq!(
            judge(1000.0, 1.0, &acc(900, 900, 900), 0.001),
            Verdict::Generator
        );
        assert_eq!(judge(1000.0, 1.0, &acc(0, 0, 0), 0.001), Verdict::Nothing);
    }

    #[test]
    fn step_counts_only_its_own_packets() {
        let mut a = StepAcc::new(1_000);
        a.on_received(999, 2_000, 100); // an earlier step's packet
        a.on_received(1_000, 2_000, 100);
        a.send_end_ns = 3_000;
        a.on_received(2_500, 3_500, 100); // back during the settle period
        assert_eq!(
            (
                a.stragglers,
                a.received,
                a.received_in_step,
                a.received_bytes
            ),
            (1, 2, 1, 200)
        );
        assert_eq!(a.rtt.count(), 2);
    }

    /// Runs a planner against a relay that passes every rate up to `capacity`.
    fn sweep(start: f64, capacity: f64, refine: usize, max_steps: usize) -> (Vec<f64>, Planner) {
        let mut p = Planner::new(start, 2.0, refine, max_steps);
        let mut rates = Vec::new();
        while let Some(r) = p.next() {
            rates.push(r);
            p.record(r, r <= capacity, 1.0);
        }
        (rates, p)
    }

    #[test]
    fn planner_ramps_then_bisects() {
        let (rates, p) = sweep(1000.0, 5000.0, 2, 20);
        // 1000, 2000, 4000 pass; 8000 fails; then sqrt(4000*8000) ~ 5657 fails,
        // sqrt(4000*5657) ~ 4757 passes.
        assert_eq!(rates.len(), 6);
        assert_eq!(&rates[..4], &[1000.0, 2000.0, 4000.0, 8000.0]);
        assert!((rates[4] - 5656.85).abs() < 0.1, "{rates:?}");
        assert!((rates[5] - 4756.83).abs() < 0.1, "{rates:?}");
        assert!((p.best.unwrap() - 4756.83).abs() < 0.1);
        assert!((p.lowest_fail.unwrap() - 5656.85).abs() < 0.1);
        assert_eq!(p.stop.as_deref(), Some("refined"));
    }

    #[test]
    fn planner_steps_down_when_the_start_is_too_high() {
        let (rates, p) = sweep(8000.0, 1500.0, 0, 20);
        assert_eq!(rates, vec![8000.0, 4000.0, 2000.0, 1000.0]);
        assert_eq!(p.best, Some(1000.0));
        assert_eq!(p.lowest_fail, Some(2000.0));
    }

    #[test]
    fn planner_is_bounded() {
        // Never fails: stops at the step limit.
        let (rates, p) = sweep(1.0, f64::INFINITY, 3, 5);
        assert_eq!(rates.len(), 5);
        assert_eq!(p.best, Some(16.0));
        assert_eq!(p.stop.as_deref(), Some("--sweep-max-steps reached"));
        // Never passes: stops at the floor.
        let (rates, p) = sweep(8.0, 0.0, 3, 50);
        assert_eq!(rates, vec![8.0, 4.0, 2.0, 1.0]);
        assert_eq!(p.best, None);
        assert!(p.stop.is_some());
    }
}
