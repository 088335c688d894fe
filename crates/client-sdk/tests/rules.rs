//! The SDK rules of ARCHITECTURE §5, three ways: a table of named sequences with the expected
//! result of every step; every sequence of up to five calls checked against the rules as the
//! architecture states them; and the same rules through the public `Client` (no network: direct
//! and self-deployed joins only).

mod common;

use client_sdk::rules::{parse_mode, ConnectionState, LeaveAction, ProxySetting, Rules};
use client_sdk::{
    Client, ClientConfig, Event, ProxyServer, Route, SdkError, TransportMode, TurnServer,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Start(Option<u8>),
    Stop,
    SetProxy,
    SetProxyBad,
    SetTurn,
    SetTurnBad,
    /// begin_join + finish_join(ok).
    Join,
    /// begin_join + finish_join(failed).
    JoinFail,
    /// begin_join only: stays connecting.
    BeginJoin,
    /// begin_leave, then finish_leave when it says Leave.
    Leave,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exp {
    Ok,
    NotSupported,
    InvalidParameter,
    InvalidOperation(&'static str),
}

fn proxy() -> ProxyServer {
    ProxyServer {
        address: "proxy.example".into(),
        signal_port: Some(4000),
        tls_port: Some(443),
    }
}

fn turn() -> TurnServer {
    TurnServer {
        host: "turn.example".into(),
        port: 3478,
        username: "user".into(),
        password: "pass".into(),
        transport: TransportMode::Udp,
    }
}

fn apply(r: &mut Rules, op: Op) -> Result<(), SdkError> {
    match op {
        Op::Start(m) => r.start_proxy_server(m).map(drop),
        Op::Stop => r.stop_proxy_server(),
        Op::SetProxy => r.set_proxy_server(proxy()),
        Op::SetProxyBad => r.set_proxy_server(ProxyServer {
            signal_port: None,
            tls_port: None,
            ..proxy()
        }),
        Op::SetTurn => r.set_turn_server(turn()),
        Op::SetTurnBad => r.set_turn_server(TurnServer { port: 0, ..turn() }),
        Op::Join | Op::JoinFail => {
            let a = r.begin_join()?;
            assert!(r.finish_join(a.id, op == Op::Join));
            Ok(())
        }
        Op::BeginJoin => r.begin_join().map(drop),
        Op::Leave => {
            if r.begin_leave() == LeaveAction::Leave {
                r.finish_leave();
            }
            Ok(())
        }
    }
}

fn classify(r: &Result<(), SdkError>) -> Exp {
    match r {
        Ok(()) => Exp::Ok,
        Err(SdkError::NotSupported(_)) => Exp::NotSupported,
        Err(SdkError::InvalidParameter(_)) => Exp::InvalidParameter,
        Err(SdkError::InvalidOperation(m)) => Exp::InvalidOperation(m),
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

use Exp::{InvalidOperation as IOp, InvalidParameter as IPar, NotSupported as NSup, Ok as OK};
use Op::*;

const START_BJ: Exp = IOp("start proxy server before join");
const STOP_BJ: Exp = IOp("stop proxy server before join");
const SETP_BJ: Exp = IOp("set proxy server before join");
const SETT_BJ: Exp = IOp("set turn server before join");
const ALREADY: Exp = IOp("proxy already set");

fn cloud(m: TransportMode) -> ProxySetting {
    ProxySetting::Cloud(m)
}

fn self_hosted(p: bool, t: bool) -> ProxySetting {
    ProxySetting::SelfHosted {
        proxy: p.then(proxy),
        turn: t.then(turn),
    }
}

#[test]
fn table_of_sequences() {
    use ConnectionState::*;
    use TransportMode::*;
    #[allow(clippy::type_complexity)]
    let table: Vec<(&str, Vec<(Op, Exp)>, ProxySetting, ConnectionState)> = vec![
        (
            "no mode means 3 (UDP)",
            vec![(Start(None), OK)],
            cloud(Udp),
            Disconnected,
        ),
        (
            "mode 3 is UDP",
            vec![(Start(Some(3)), OK)],
            cloud(Udp),
            Disconnected,
        ),
        (
            "mode 4 is TCP",
            vec![(Start(Some(4)), OK)],
            cloud(Tcp),
            Disconnected,
        ),
        (
            "mode 5 is TLS",
            vec![(Start(Some(5)), OK)],
            cloud(Tls),
            Disconnected,
        ),
        (
            "modes 1 and 2 are not supported",
            vec![(Start(Some(1)), NSup), (Start(Some(2)), NSup)],
            ProxySetting::Off,
            Disconnected,
        ),
        (
            "other modes are invalid",
            vec![
                (Start(Some(0)), IPar),
                (Start(Some(6)), IPar),
                (Start(Some(7)), IPar),
                (Start(Some(255)), IPar),
            ],
            ProxySetting::Off,
            Disconnected,
        ),
        (
            "start twice keeps the last mode",
            vec![(Start(Some(4)), OK), (Start(Some(5)), OK)],
            cloud(Tls),
            Disconnected,
        ),
        (
            "start twice, default last",
            vec![(Start(Some(5)), OK), (Start(None), OK)],
            cloud(Udp),
            Disconnected,
        ),
        (
            "a refused start changes nothing",
            vec![
                (Start(Some(4)), OK),
                (Start(Some(7)), IPar),
                (Start(Some(1)), NSup),
            ],
            cloud(Tcp),
            Disconnected,
        ),
        (
            "after join: all four refused",
            vec![
                (Start(None), OK),
                (Join, OK),
                (Start(Some(4)), START_BJ),
                (Stop, STOP_BJ),
                (SetProxy, SETP_BJ),
                (SetTurn, SETT_BJ),
            ],
            cloud(Udp),
            Connected,
        ),
        (
            "after a direct join: all four refused",
            vec![
                (Join, OK),
                (Start(None), START_BJ),
                (Stop, STOP_BJ),
                (SetProxy, SETP_BJ),
                (SetTurn, SETT_BJ),
            ],
            ProxySetting::Off,
            Connected,
        ),
        (
            "during join: all four refused",
            vec![
                (BeginJoin, OK),
                (Start(None), START_BJ),
                (Stop, STOP_BJ),
                (SetProxy, SETP_BJ),
                (SetTurn, SETT_BJ),
            ],
            ProxySetting::Off,
            Connecting,
        ),
        (
            "state is checked before the mode",
            vec![
                (Join, OK),
                (Start(Some(7)), START_BJ),
                (Start(Some(1)), START_BJ),
            ],
            ProxySetting::Off,
            Connected,
        ),
        (
            "state is checked before the server",
            vec![(Join, OK), (SetTurnBad, SETT_BJ), (SetProxyBad, SETP_BJ)],
            ProxySetting::Off,
            Connected,
        ),
        (
            "after leave: allowed again",
            vec![
                (Start(Some(3)), OK),
                (Join, OK),
                (Leave, OK),
                (Stop, OK),
                (Start(Some(4)), OK),
            ],
            cloud(Tcp),
            Disconnected,
        ),
        (
            "after a failed join: allowed",
            vec![(Start(None), OK), (JoinFail, OK), (Start(Some(5)), OK)],
            cloud(Tls),
            Disconnected,
        ),
        (
            "the setting outlives join and leave",
            vec![(Start(Some(4)), OK), (Join, OK), (Leave, OK)],
            cloud(Tcp),
            Disconnected,
        ),
        (
            "start after set_turn_server",
            vec![(SetTurn, OK), (Start(None), ALREADY)],
            self_hosted(false, true),
            Disconnected,
        ),
        (
            "start after set_proxy_server",
            vec![(SetProxy, OK), (Start(Some(3)), ALREADY)],
            self_hosted(true, false),
            Disconnected,
        ),
        (
            "set_turn_server after start",
            vec![(Start(None), OK), (SetTurn, ALREADY)],
            cloud(Udp),
            Disconnected,
        ),
        (
            "set_proxy_server after start",
            vec![(Start(Some(5)), OK), (SetProxy, ALREADY)],
            cloud(Tls),
            Disconnected,
        ),
        (
            "the mode is checked before the exclusion",
            vec![
                (SetTurn, OK),
                (Start(Some(7)), IPar),
                (Start(Some(2)), NSup),
            ],
            self_hosted(false, true),
            Disconnected,
        ),
        (
            "the server is checked before the exclusion",
            vec![(Start(None), OK), (SetTurnBad, IPar), (SetProxyBad, IPar)],
            cloud(Udp),
            Disconnected,
        ),
        (
            "set_proxy_server and set_turn_server combine",
            vec![(SetProxy, OK), (SetTurn, OK)],
            self_hosted(true, true),
            Disconnected,
        ),
        (
            "set_turn_server twice",
            vec![(SetTurn, OK), (SetTurn, OK)],
            self_hosted(false, true),
            Disconnected,
        ),
        (
            "stop turns the cloud proxy off",
            vec![(Start(Some(5)), OK), (Stop, OK), (SetTurn, OK)],
            self_hosted(false, true),
            Disconnected,
        ),
        (
            "stop turns self-set proxies off",
            vec![
                (SetProxy, OK),
                (SetTurn, OK),
                (Stop, OK),
                (Start(Some(5)), OK),
            ],
            cloud(Tls),
            Disconnected,
        ),
        (
            "stop with nothing set",
            vec![(Stop, OK), (Stop, OK)],
            ProxySetting::Off,
            Disconnected,
        ),
        (
            "join twice",
            vec![(Join, OK), (Join, IOp("already joined"))],
            ProxySetting::Off,
            Connected,
        ),
        (
            "join during join",
            vec![
                (BeginJoin, OK),
                (BeginJoin, IOp("join already in progress")),
            ],
            ProxySetting::Off,
            Connecting,
        ),
        (
            "leave during join cancels it",
            vec![
                (Start(None), OK),
                (BeginJoin, OK),
                (Leave, OK),
                (Start(Some(4)), OK),
            ],
            cloud(Tcp),
            Disconnected,
        ),
        (
            "leave without join",
            vec![(Leave, OK), (Leave, OK), (Start(None), OK)],
            cloud(Udp),
            Disconnected,
        ),
        (
            "invalid servers",
            vec![(SetTurnBad, IPar), (SetProxyBad, IPar)],
            ProxySetting::Off,
            Disconnected,
        ),
    ];
    for (name, steps, setting, state) in table {
        let mut r = Rules::new();
        for (i, (op, want)) in steps.iter().enumerate() {
            let got = classify(&apply(&mut r, *op));
            assert_eq!(got, *want, "{name}: step {i} {op:?}");
        }
        assert_eq!(r.setting(), &setting, "{name}: final setting");
        assert_eq!(r.state(), state, "{name}: final state");
    }
}

#[test]
fn every_mode_number() {
    for m in 0..=u8::MAX {
        let want = match m {
            3 => Ok(TransportMode::Udp),
            4 => Ok(TransportMode::Tcp),
            5 => Ok(TransportMode::Tls),
            1 | 2 => Err(NSup),
            _ => Err(IPar),
        };
        let got = parse_mode(Some(m)).map_err(|e| classify(&Err(e)));
        assert_eq!(got, want, "mode {m}");
    }
    assert_eq!(parse_mode(None), Ok(TransportMode::Udp));
}

#[test]
fn a_cancelled_join_cannot_finish_later() {
    let mut r = Rules::new();
    let a = r.begin_join().unwrap();
    assert_eq!(r.begin_leave(), LeaveAction::CancelJoin);
    assert_eq!(r.state(), ConnectionState::Disconnected);
    assert!(
        !r.finish_join(a.id, true),
        "a cancelled join must not connect"
    );
    assert_eq!(r.state(), ConnectionState::Disconnected);
    // ... not even after a new join started.
    let b = r.begin_join().unwrap();
    assert!(!r.finish_join(a.id, true));
    assert_eq!(r.state(), ConnectionState::Connecting);
    assert!(r.finish_join(b.id, true));
    assert_eq!(r.state(), ConnectionState::Connected);
}

#[test]
fn while_leaving() {
    let mut r = Rules::new();
    r.start_proxy_server(None).unwrap();
    let a = r.begin_join().unwrap();
    assert_eq!(a.setting, ProxySetting::Cloud(TransportMode::Udp));
    assert!(r.finish_join(a.id, true));
    assert_eq!(r.begin_leave(), LeaveAction::Leave);
    assert_eq!(r.state(), ConnectionState::Disconnecting);
    assert_eq!(r.begin_leave(), LeaveAction::AlreadyLeaving);
    assert_eq!(
        classify(&r.begin_join().map(drop)),
        IOp("leave in progress")
    );
    assert_eq!(classify(&r.start_proxy_server(None).map(drop)), START_BJ);
    assert_eq!(classify(&r.stop_proxy_server()), STOP_BJ);
    r.finish_leave();
    assert_eq!(r.state(), ConnectionState::Disconnected);
    assert_eq!(classify(&r.stop_proxy_server()), OK);
}

/// The rules as ARCHITECTURE §5 states them, as the expected result of `op` from `before`
/// (and the setting it leaves when it succeeds).
fn spec(before: &Rules, op: Op) -> (Exp, ProxySetting) {
    let disconnected = before.state() == ConnectionState::Disconnected;
    let same = before.setting().clone();
    let refused = |e: Exp| (e, same.clone());
    let (p, t) = match &same {
        ProxySetting::SelfHosted { proxy, turn } => (proxy.clone(), turn.clone()),
        _ => (None, None),
    };
    let is_cloud = matches!(same, ProxySetting::Cloud(_));
    let is_self = matches!(same, ProxySetting::SelfHosted { .. });
    match op {
        Start(_) if !disconnected => refused(START_BJ),
        Start(Some(1 | 2)) => refused(NSup),
        Start(Some(m)) if !(3..=5).contains(&m) => refused(IPar),
        Start(_) if is_self => refused(ALREADY),
        Start(m) => (
            OK,
            ProxySetting::Cloud(match m {
                Some(4) => TransportMode::Tcp,
                Some(5) => TransportMode::Tls,
                _ => TransportMode::Udp,
            }),
        ),
        Stop if !disconnected => refused(STOP_BJ),
        Stop => (OK, ProxySetting::Off),
        SetProxy | SetProxyBad if !disconnected => refused(SETP_BJ),
        SetTurn | SetTurnBad if !disconnected => refused(SETT_BJ),
        SetProxyBad | SetTurnBad => refused(IPar),
        SetProxy | SetTurn if is_cloud => refused(ALREADY),
        SetProxy => (
            OK,
            ProxySetting::SelfHosted {
                proxy: Some(proxy()),
                turn: t,
            },
        ),
        SetTurn => (
            OK,
            ProxySetting::SelfHosted {
                proxy: p,
                turn: Some(turn()),
            },
        ),
        Join | JoinFail | BeginJoin if !disconnected => refused(IOp(match before.state() {
            ConnectionState::Connecting => "join already in progress",
            ConnectionState::Connected => "already joined",
            _ => "leave in progress",
        })),
        Join | JoinFail | BeginJoin | Leave => (OK, same),
    }
}

fn expected_state(before: ConnectionState, op: Op, ok: bool) -> ConnectionState {
    use ConnectionState::*;
    match (op, ok) {
        (_, false) => before,
        (Join, true) => Connected,
        (JoinFail, true) => Disconnected,
        (BeginJoin, true) => Connecting,
        (Leave, true) => Disconnected,
        (_, true) => before,
    }
}

#[test]
fn every_sequence_of_five_calls_follows_the_architecture() {
    const OPS: [Op; 13] = [
        Start(None),
        Start(Some(1)),
        Start(Some(4)),
        Start(Some(5)),
        Start(Some(9)),
        Stop,
        SetProxy,
        SetProxyBad,
        SetTurn,
        SetTurnBad,
        Join,
        BeginJoin,
        Leave,
    ];
    fn walk(r: &Rules, depth: usize, path: &mut Vec<Op>, checked: &mut u64) {
        if depth == 0 {
            return;
        }
        for op in OPS {
            let mut after = r.clone();
            let got = apply(&mut after, op);
            let (want, setting) = spec(r, op);
            path.push(op);
            assert_eq!(classify(&got), want, "after {path:?}");
            if got.is_err() {
                assert_eq!(&after, r, "a refused call changed the rules: {path:?}");
            }
            assert_eq!(after.setting(), &setting, "setting after {path:?}");
            assert_eq!(
                after.state(),
                expected_state(r.state(), op, got.is_ok()),
                "state after {path:?}"
            );
            *checked += 1;
            walk(&after, depth - 1, path, checked);
            path.pop();
        }
    }
    let mut checked = 0;
    walk(&Rules::new(), 5, &mut Vec::new(), &mut checked);
    assert_eq!(checked, (1..=5).map(|k| 13u64.pow(k)).sum::<u64>());
}

const APP: &str = "app";
const CERT: &str = "rules-test-certificate";

/// A client whose direct route is a real media network on `rtn_port`.
fn client_with_rtn(rtn_port: u16) -> Client {
    Client::new(ClientConfig {
        control_url: "https://control.invalid".into(),
        rtn_signal_url: Some(format!("ws://127.0.0.1:{rtn_port}/signal")),
        ..Default::default()
    })
    .unwrap()
}

fn join_token(uid: &str) -> String {
    let exp = common::now_unix() + 600;
    credentials::join_token::mint_join_token(APP, CERT.as_bytes(), "room", uid, exp)
}

#[tokio::test]
async fn the_rules_through_the_client() {
    let rtn_port = common::free_ports(1)[0];
    let _rtn = common::start_rtn_with(rtn_port, &[(APP, CERT)]).await;
    let (own_turn, turn_port) = common::start_own_turn(64480).await;
    let turn = || TurnServer {
        host: "127.0.0.1".into(),
        port: turn_port,
        ..turn()
    };
    let c = client_with_rtn(rtn_port);
    let mut events = c.events();
    assert!(matches!(
        c.start_proxy_server(Some(1)),
        Err(SdkError::NotSupported(_))
    ));
    assert!(matches!(
        c.start_proxy_server(Some(7)),
        Err(SdkError::InvalidParameter(_))
    ));
    c.set_turn_server(turn()).unwrap();
    assert_eq!(
        c.start_proxy_server(None),
        Err(SdkError::InvalidOperation("proxy already set"))
    );

    // Self-deployed TURN: that server is the ICE server and carries the media; no control
    // plane call (its URL does not resolve).
    let info = c
        .join(APP, "room", &join_token("alice"), "alice")
        .await
        .unwrap();
    assert_eq!(c.connection_state(), ConnectionState::Connected);
    assert_eq!(
        info.ice_servers()[0].urls,
        [format!("turn:127.0.0.1:{turn_port}?transport=udp")]
    );
    assert!(
        c.media_stats()
            .unwrap()
            .candidate
            .starts_with("relay 127.0.0.1:"),
        "media through the app's TURN server"
    );
    assert_eq!(info.ice_servers()[0].username, "user");
    assert!(matches!(
        info.route,
        Route::SelfHosted {
            turn: Some(_),
            proxy: None,
            ..
        }
    ));
    assert_eq!(c.join_info(), Some(info));
    for (name, r) in [
        ("start", c.start_proxy_server(None)),
        ("stop", c.stop_proxy_server()),
        ("set proxy", c.set_proxy_server(proxy())),
        ("set turn", c.set_turn_server(turn())),
    ] {
        assert_eq!(
            r,
            Err(SdkError::InvalidOperation(match name {
                "start" => "start proxy server before join",
                "stop" => "stop proxy server before join",
                "set proxy" => "set proxy server before join",
                _ => "set turn server before join",
            })),
            "{name} while joined"
        );
    }
    assert_eq!(
        c.join(APP, "room", &join_token("alice"), "alice").await,
        Err(SdkError::InvalidOperation("already joined"))
    );
    c.leave().await.unwrap();
    assert_eq!(c.connection_state(), ConnectionState::Disconnected);
    assert_eq!(c.join_info(), None);

    // stop turns it off: the next join is direct.
    c.stop_proxy_server().unwrap();
    assert_eq!(c.proxy_setting(), ProxySetting::Off);
    let info = c
        .join(APP, "room", &join_token("alice"), "alice")
        .await
        .unwrap();
    assert_eq!(info.route, Route::Direct);
    assert!(c.media_stats().unwrap().candidate.starts_with("host "));
    assert!(info.ice_servers().is_empty());
    c.leave().await.unwrap();
    c.leave().await.unwrap(); // not joined: nothing to do

    assert!(matches!(
        c.join("", "room", "", "alice").await,
        Err(SdkError::InvalidParameter(_))
    ));
    assert_eq!(c.connection_state(), ConnectionState::Disconnected);

    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        // Media events come and go with timing; the state sequence is what is checked.
        if matches!(
            e,
            Event::ConnectionState(_) | Event::IsUsingCloudProxy { .. }
        ) {
            seen.push(e);
        }
    }
    tokio::task::spawn_blocking(move || drop(own_turn))
        .await
        .unwrap();
    use ConnectionState::*;
    let not_cloud = Event::IsUsingCloudProxy {
        using: false,
        transport: None,
    };
    assert_eq!(
        seen,
        [
            Event::ConnectionState(Connecting),
            Event::ConnectionState(Connected),
            not_cloud.clone(),
            Event::ConnectionState(Disconnecting),
            Event::ConnectionState(Disconnected),
            Event::ConnectionState(Connecting),
            Event::ConnectionState(Connected),
            not_cloud,
            Event::ConnectionState(Disconnecting),
            Event::ConnectionState(Disconnected),
        ]
    );
}

#[test]
fn bad_client_config() {
    let bad = |cfg: ClientConfig| matches!(Client::new(cfg), Err(SdkError::InvalidParameter(_)));
    assert!(bad(ClientConfig::default()));
    assert!(bad(ClientConfig {
        control_url: "http://control.example".into(),
        ..Default::default()
    }));
    assert!(bad(ClientConfig {
        control_url: "https://control.example".into(),
        ca_pem: Some("not a certificate".into()),
        ..Default::default()
    }));
}
