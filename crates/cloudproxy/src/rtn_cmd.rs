//! `cloudproxy rtn`: the stand-in media network (signalling gateway + SFU), for the demo and
//! the tests. It is not the product; it makes the product demonstrable.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use clap::Args;

use crate::{init_logs, wait_for_signal, EX_UNAVAILABLE, EX_USAGE};

/// Flags of `cloudproxy rtn`.
#[derive(Args, Debug)]
pub struct RtnArgs {
    /// WebSocket signalling gateway address (GET /signal).
    #[arg(long, value_name = "IP:PORT", default_value = "0.0.0.0:8443")]
    signal_listen: SocketAddr,
    /// Media (WebRTC, ICE-lite) UDP socket.
    #[arg(long, value_name = "IP:PORT", default_value = "0.0.0.0:10000")]
    media_listen: SocketAddr,
    /// Address announced as the media candidate (the address edges relay to).
    #[arg(long, value_name = "IP")]
    media_public: IpAddr,
    /// App ID and its certificate, ID=CERT, to check join tokens (repeatable).
    #[arg(long = "app", value_name = "ID=CERT", required = true)]
    apps: Vec<String>,
}

pub fn run(args: RtnArgs) -> ExitCode {
    init_logs(false);
    let mut apps = HashMap::new();
    for a in &args.apps {
        match a.split_once('=') {
            Some((id, cert)) if !id.is_empty() && !cert.is_empty() => {
                apps.insert(id.to_owned(), cert.to_owned());
            }
            _ => {
                eprintln!("cloudproxy rtn: --app must be ID=CERT, not {a:?}");
                return ExitCode::from(EX_USAGE);
            }
        }
    }
    let cfg = rtn::RtnConfig {
        signal_listen: args.signal_listen,
        media_listen: args.media_listen,
        media_public: args.media_public,
        apps,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cloudproxy rtn: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let rtn = match rtn::Rtn::start(cfg).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("cloudproxy rtn: {e}");
                return ExitCode::from(EX_UNAVAILABLE);
            }
        };
        tracing::info!(signal = %rtn.signal_addr(), media = %rtn.media_candidate(), "rtn stand-in serving");
        wait_for_signal().await;
        ExitCode::SUCCESS
    })
}
