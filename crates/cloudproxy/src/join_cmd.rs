//! `cloudproxy join`: a command-line participant built on the Rust SDK. It joins a channel
//! (through the cloud proxy by default), publishes the SDK's test audio and video, and prints
//! a line of stats a second — what an IT admin runs behind a new firewall, and what the
//! end-to-end tests and the demo use as "someone on the other side".

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use client_sdk::{Client, ClientConfig, Event, JoinInfo, MediaStats, Publish, Route, SdkError};
use serde_json::json;

use crate::participant::{run_in_runtime, AccessArgs};
use crate::{init_logs, wait_for_signal, EX_UNAVAILABLE, EX_USAGE};

/// Flags of `cloudproxy join`.
#[derive(Args, Debug)]
pub struct JoinArgs {
    #[command(flatten)]
    access: AccessArgs,
    /// Channel to join.
    #[arg(long)]
    channel: String,
    /// User id in the channel.
    #[arg(long)]
    uid: String,
    /// Cloud proxy mode: 3 (UDP, default), 4 (TCP), 5 (TLS 443 only).
    #[arg(long, default_value_t = 3, conflicts_with = "no_proxy")]
    mode: u8,
    /// Area hint for the control plane (e.g. EU).
    #[arg(long)]
    area: Option<String>,
    /// Join without the cloud proxy, straight to the media network (needs --rtn-signal).
    #[arg(long, requires = "rtn_signal")]
    no_proxy: bool,
    /// The media network's signalling URL for --no-proxy (ws://HOST:PORT/signal).
    #[arg(long, value_name = "URL")]
    rtn_signal: Option<String>,
    /// Leave and exit after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// Exit 0 only if media arrived from this uid (see --min-frames).
    #[arg(long, value_name = "UID")]
    expect_from: Option<String>,
    /// With --expect-from: audio packets and video frames needed from that uid, each.
    #[arg(long, default_value_t = 20)]
    min_frames: u64,
    /// Limit for the whole join (control plane, edges, signalling), seconds.
    #[arg(long, default_value_t = 15)]
    join_timeout: u64,
    /// Publish no audio.
    #[arg(long)]
    no_audio: bool,
    /// Publish no video.
    #[arg(long)]
    no_video: bool,
    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

/// Prints a failure (JSON or text) and returns its exit code: 64 for what the caller got
/// wrong, 69 for a join the network or the service refused.
fn fail(json_out: bool, e: &SdkError) -> ExitCode {
    if json_out {
        println!("{}", json!({"error": e.code(), "message": e.to_string()}));
    } else {
        eprintln!("cloudproxy join: {}: {e}", e.code());
    }
    match e {
        SdkError::Join(_) => ExitCode::from(EX_UNAVAILABLE),
        _ => ExitCode::from(EX_USAGE),
    }
}

pub fn run(args: JoinArgs) -> ExitCode {
    init_logs(false);
    run_in_runtime("join", run_async(args))
}

async fn run_async(args: JoinArgs) -> ExitCode {
    let ca_pem = match args.access.ca_pem("join") {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(token) = args.access.token(&args.channel, &args.uid) else {
        unreachable!("clap requires --token or --app-cert")
    };
    // Signalling gets most of the join's budget but not all of it, so that an unreachable
    // gateway is reported as SIGNAL_UNREACHABLE rather than as a bare timeout.
    let signal_timeout = Duration::from_secs(args.join_timeout.saturating_sub(2).clamp(1, 10));
    let client = match Client::new(ClientConfig {
        control_url: args.access.control.clone(),
        signal_timeout,
        ca_pem,
        area: args.area.clone(),
        rtn_signal_url: args.rtn_signal.clone(),
        publish: Publish {
            audio: !args.no_audio,
            video: !args.no_video,
        },
        ..Default::default()
    }) {
        Ok(c) => c,
        Err(e) => return fail(args.json, &e),
    };
    if !args.no_proxy {
        if let Err(e) = client.start_proxy_server(Some(args.mode)) {
            return fail(args.json, &e);
        }
    }
    let mut events = client.events();
    let started = Instant::now();
    let join = client.join(&args.access.app_id, &args.channel, &token, &args.uid);
    let info = match tokio::time::timeout(Duration::from_secs(args.join_timeout), join).await {
        Ok(Ok(info)) => info,
        Ok(Err(e)) => return fail(args.json, &e),
        Err(_) => {
            let _ = client.leave().await;
            let msg = format!("no join within {} s", args.join_timeout);
            if args.json {
                println!("{}", json!({"error": "JOIN_TIMEOUT", "message": msg}));
            } else {
                eprintln!("cloudproxy join: JOIN_TIMEOUT: {msg}");
            }
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    if !args.json {
        println!("{}", describe(&info));
    }

    let deadline = args.duration.map(|d| started + Duration::from_secs(d));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let stop = wait_for_signal();
    tokio::pin!(stop);
    let mut ended = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => break,
            ev = events.recv() => {
                if let Ok(Event::MediaEnded { why }) = ev {
                    ended = Some(why);
                    break;
                }
                continue;
            }
        }
        let stats = client.media_stats().unwrap_or_default();
        print_stats(&args, &info, &stats, started, false, None);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    let stats = client.media_stats().unwrap_or_default();
    let ok = ended.is_none() && met(&args, &stats);
    print_stats(&args, &info, &stats, started, true, Some(ok));
    let _ = client.leave().await;
    if let Some(why) = ended {
        eprintln!("cloudproxy join: the media session ended: {why}");
        return ExitCode::from(EX_UNAVAILABLE);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Whether `--expect-from` is satisfied (always, without it).
fn met(args: &JoinArgs, s: &MediaStats) -> bool {
    let Some(from) = &args.expect_from else {
        return true;
    };
    let r = s.received.get(from).copied().unwrap_or_default();
    r.audio >= args.min_frames && r.video >= args.min_frames
}

fn route_fields(
    info: &JoinInfo,
) -> (
    &'static str,
    Option<&'static str>,
    Option<String>,
    Option<String>,
    Vec<String>,
) {
    match &info.route {
        Route::CloudProxy(s) => (
            "cloud-proxy",
            Some(match s.mode {
                client_sdk::TransportMode::Udp => "udp",
                client_sdk::TransportMode::Tcp => "tcp",
                client_sdk::TransportMode::Tls => "tls",
            }),
            Some(s.edge.id.clone()),
            Some(s.edge_addr.to_string()),
            s.tried.clone(),
        ),
        Route::SelfHosted { .. } => ("self-hosted", None, None, None, Vec::new()),
        _ => ("direct", None, None, None, Vec::new()),
    }
}

fn describe(info: &JoinInfo) -> String {
    let (route, transport, edge, addr, tried) = route_fields(info);
    let mut s = format!("joined {} as {} ({route}", info.channel, info.uid);
    if let (Some(t), Some(e), Some(a)) = (transport, edge, addr) {
        s.push_str(&format!(" over {t} via {e} at {a}"));
    }
    s.push(')');
    if !tried.is_empty() {
        s.push_str(&format!("; tried first: {}", tried.join("; ")));
    }
    s
}

fn print_stats(
    args: &JoinArgs,
    info: &JoinInfo,
    s: &MediaStats,
    started: Instant,
    done: bool,
    ok: Option<bool>,
) {
    let t = started.elapsed().as_secs();
    let (route, transport, edge, addr, tried) = route_fields(info);
    if args.json {
        let recv: serde_json::Map<String, serde_json::Value> = s
            .received
            .iter()
            .map(|(uid, r)| (uid.clone(), json!({"audio": r.audio, "video": r.video})))
            .collect();
        let mut line = json!({
            "t": t,
            "state": if s.connected { "connected" } else { "connecting" },
            "route": route,
            "transport": transport,
            "edge": edge,
            "edge_addr": addr,
            "signal": s.signal,
            "candidate": s.candidate,
            "tried": tried,
            "members": s.members,
            "sent": {"audio": s.sent_audio, "video": s.sent_video},
            "recv": recv,
        });
        if done {
            line["done"] = json!(true);
            line["ok"] = json!(ok.unwrap_or(false));
        }
        println!("{line}");
    } else {
        let recv: Vec<String> = s
            .received
            .iter()
            .map(|(uid, r)| format!("{uid} {}a/{}v", r.audio, r.video))
            .collect();
        println!(
            "{t:>4}s {} {route}{} media {} | sent {}a/{}v | recv {} | members {}{}",
            if s.connected {
                "connected "
            } else {
                "connecting"
            },
            transport.map(|t| format!("/{t}")).unwrap_or_default(),
            s.candidate,
            s.sent_audio,
            s.sent_video,
            if recv.is_empty() {
                "-".into()
            } else {
                recv.join(", ")
            },
            if s.members.is_empty() {
                "-".into()
            } else {
                s.members.join(",")
            },
            match ok {
                Some(true) => " | done: ok",
                Some(false) => " | done: expectation NOT met",
                None => "",
            }
        );
    }
}
