//! `cloudproxy doctor`: run by enterprise IT inside their network after opening the
//! whitelist. It checks every port of every mode the way a join would use it (see
//! `client_sdk::doctor`) and prints one line per check: what passes, and what the firewall
//! (or the service) stops, with the address and port to look at.
//!
//! Exit codes: 0 when nothing failed, 69 when a check failed (or nothing passed, or a mode
//! named with `--mode` is not enabled for the App ID), 64 for usage errors.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use client_sdk::doctor::{self, Check, DoctorConfig, Verdict};
use client_sdk::{rules::parse_mode, ClientConfig, TransportMode};
use serde_json::json;

use crate::participant::{run_in_runtime, AccessArgs};
use crate::{init_logs, EX_UNAVAILABLE, EX_USAGE};

/// Flags of `cloudproxy doctor`.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    #[command(flatten)]
    access: AccessArgs,
    /// Channel the token is for.
    #[arg(long, default_value = "cloudproxy-doctor")]
    channel: String,
    /// User id the token is for.
    #[arg(long, default_value = "doctor")]
    uid: String,
    /// Mode to check: 3 (UDP), 4 (TCP), 5 (TLS 443); repeat for several. Default: all three,
    /// and a mode the App ID does not enable is skipped; a mode named here that it does not
    /// enable makes the exit code 69.
    #[arg(long = "mode", value_name = "MODE")]
    modes: Vec<u8>,
    /// Area hint for the control plane (e.g. EU).
    #[arg(long)]
    area: Option<String>,
    /// Print JSON lines (one per check, then a summary) instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DoctorArgs) -> ExitCode {
    init_logs(false);
    run_in_runtime("doctor", run_async(args))
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("cloudproxy doctor: {msg}");
    ExitCode::from(EX_USAGE)
}

async fn run_async(args: DoctorArgs) -> ExitCode {
    let asked = if args.modes.is_empty() {
        vec![3, 4, 5]
    } else {
        args.modes.clone()
    };
    let mut modes = Vec::new();
    for m in asked {
        match parse_mode(Some(m)) {
            Ok(t) if !modes.contains(&t) => modes.push(t),
            Ok(_) => {}
            Err(e) => return usage(&format!("--mode {m}: {}: {e}", e.code())),
        }
    }
    let ca_pem = match args.access.ca_pem("doctor") {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(token) = args.access.token(&args.channel, &args.uid) else {
        return usage("--token or --app-cert is needed");
    };
    let cfg = DoctorConfig {
        client: ClientConfig {
            control_url: args.access.control.clone(),
            ca_pem,
            area: args.area.clone(),
            request_timeout: Duration::from_secs(5),
            ..Default::default()
        },
        app_id: args.access.app_id.clone(),
        channel: args.channel.clone(),
        uid: args.uid.clone(),
        token,
        modes,
    };
    if !args.json {
        println!(
            "cloudproxy doctor: App ID {}, control plane {}",
            args.access.app_id, args.access.control
        );
    }
    let checks = match doctor::run(&cfg).await {
        Ok(c) => c,
        Err(e) => return usage(&format!("{}: {e}", e.code())),
    };
    let mut last_mode = None;
    for c in &checks {
        if args.json {
            println!("{}", check_json(c));
            continue;
        }
        if last_mode != Some(c.mode) {
            last_mode = Some(c.mode);
            println!("mode {}", mode_name(c.mode));
        }
        println!("{}", check_line(c));
    }
    let (pass, fail, skip) = doctor::tally(&checks);
    // A mode asked for by name that the App ID does not enable is a finding, not a detail.
    let asked_but_off = !args.modes.is_empty()
        && checks
            .iter()
            .any(|c| c.step == "proxy-info" && c.verdict == Verdict::Skip);
    if args.json {
        println!(
            "{}",
            json!({"summary": {"pass": pass, "fail": fail, "skip": skip}})
        );
    } else {
        println!("{pass} passed, {fail} failed, {skip} skipped");
        if asked_but_off {
            println!("A mode asked for with --mode is not enabled for this App ID.");
        }
        if fail > 0 {
            println!(
                "A failed check names the address and port that did not get through: compare it \
                 with `cloudproxy whitelist --app {}` and the firewall's rules.",
                args.access.app_id
            );
        }
    }
    if fail > 0 || asked_but_off || pass == 0 {
        ExitCode::from(EX_UNAVAILABLE)
    } else {
        ExitCode::SUCCESS
    }
}

fn mode_name(m: TransportMode) -> &'static str {
    match m {
        TransportMode::Udp => "3 (UDP)",
        TransportMode::Tcp => "4 (TCP)",
        TransportMode::Tls => "5 (TLS 443)",
    }
}

fn mode_number(m: TransportMode) -> u8 {
    match m {
        TransportMode::Udp => 3,
        TransportMode::Tcp => 4,
        TransportMode::Tls => 5,
    }
}

/// `  PASS  udp    edge-a 10.0.0.1:3478  stun  STUN Binding answered; ...  (3 ms)`
fn check_line(c: &Check) -> String {
    let who = match &c.edge {
        Some(id) => format!("{id} {}", c.target),
        None => format!("control {}", c.target),
    };
    let took = if c.verdict == Verdict::Skip {
        String::new()
    } else {
        format!("  ({} ms)", c.elapsed.as_millis())
    };
    format!(
        "  {}  {:<5}  {:<28}  {:<13}  {}{took}",
        c.verdict.as_str(),
        c.proto,
        who,
        c.step,
        c.detail
    )
}

fn check_json(c: &Check) -> serde_json::Value {
    json!({
        "mode": mode_number(c.mode),
        "step": c.step,
        "proto": c.proto,
        "edge": c.edge,
        "target": c.target,
        "verdict": c.verdict.as_str(),
        "detail": c.detail,
        "ms": c.elapsed.as_millis() as u64,
    })
}
