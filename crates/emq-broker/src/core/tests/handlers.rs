//! Routing by declared handlers: a job goes to a jobmanager that has its
//! handler when the queue's jobmanagers differ; bodies are read only then.

use super::*;
use emq_proto::{Capabilities, JobCall};

fn inform_with(s: &mut Sim, jm: &str, handlers: Option<&[&str]>) {
    let timing = Some(Timing {
        heartbeat_ms: 1000,
        liveness_ms: 3000,
    });
    let capabilities = Capabilities {
        handlers: handlers.map(|h| h.iter().map(|n| n.to_string()).collect()),
        batch: false,
    };
    // EventMQ jobmanagers send no timing (and so no capabilities).
    let timing = if handlers.is_some() { timing } else { None };
    s.send(
        Endpoint::Backend,
        jm,
        "inform",
        Message::Inform(Inform {
            queues: vec![(10, "default".into())],
            peer_type: PeerType::Worker,
            timing,
            capabilities,
        }),
    );
}

fn submit(s: &mut Sim, id: &str, handler: &str) {
    let req = Request {
        queue: "default".into(),
        headers: Headers::default(),
        body: JobCall::new(handler).encode(ContentType::Json),
    };
    s.send(Endpoint::Frontend, "c", id, Message::Request(req));
}

#[test]
fn jobs_go_only_to_jobmanagers_with_their_handler() {
    let mut s = Sim::default();
    inform_with(&mut s, "stock", Some(&["emq.echo", "emq.noop"]));
    inform_with(&mut s, "custom", Some(&["myapp.tasks.add"]));
    s.ready("stock", 10);
    s.ready("custom", 10);
    s.drain();
    for i in 0..6 {
        submit(&mut s, &format!("add-{i}"), "myapp.tasks.add");
        submit(&mut s, &format!("echo-{i}"), "emq.echo");
    }
    for (jm, id) in s.dispatched() {
        let want = if id.starts_with("add") { "custom" } else { "stock" };
        assert_eq!(jm, want, "{id}");
    }
    // A handler nobody declares goes to anyone, who reports it unknown.
    submit(&mut s, "nobody", "no.such.handler");
    assert_eq!(s.dispatched().len(), 1);
}

#[test]
fn a_busy_jobmanager_keeps_its_jobs_waiting_while_the_other_stays_free() {
    let mut s = Sim::default();
    inform_with(&mut s, "stock", Some(&["emq.echo"]));
    inform_with(&mut s, "custom", Some(&["myapp.tasks.add"]));
    s.ready("stock", 5);
    s.ready("custom", 1);
    s.drain();
    for i in 0..4 {
        submit(&mut s, &format!("add-{i}"), "myapp.tasks.add");
    }
    submit(&mut s, "echo-0", "emq.echo");
    // One add runs, three wait for `custom`; the echo behind them runs at once.
    assert_eq!(s.dispatched(), d(&[("custom", "add-0"), ("stock", "echo-0")]));
    s.reply("custom", "add-0");
    s.ready("custom", 1);
    assert_eq!(s.dispatched(), d(&[("custom", "add-1")]));
    assert_eq!(s.r.queues.waiting_total(), 2);
}

#[test]
fn eventmq_jobmanagers_take_any_job_and_uniform_queues_read_no_body() {
    let mut s = Sim::default();
    inform_with(&mut s, "a", Some(&["emq.echo"]));
    inform_with(&mut s, "b", Some(&["emq.echo"]));
    s.ready("a", 1);
    s.drain();
    submit(&mut s, "j1", "emq.echo");
    assert_eq!(s.dispatched().len(), 1);
    assert!(
        s.r.jobs.values().all(|j| j.handler == HandlerId::UNREAD),
        "same handlers everywhere: the body was not read"
    );
    // An EventMQ jobmanager joins: the queue's jobmanagers now differ.
    inform_with(&mut s, "py", None);
    s.ready("py", 2);
    s.ready("b", 1);
    s.drain();
    submit(&mut s, "add", "myapp.tasks.add");
    submit(&mut s, "echo", "emq.echo");
    let got = s.dispatched();
    assert!(got.contains(&("py".to_string(), "add".to_string())), "{got:?}");
    assert_eq!(got.len(), 2, "{got:?}");
}

#[test]
fn a_queue_that_becomes_mixed_counts_the_jobs_already_waiting() {
    let mut s = Sim::default();
    inform_with(&mut s, "stock", Some(&["emq.echo"]));
    for i in 0..3 {
        submit(&mut s, &format!("add-{i}"), "myapp.tasks.add");
    }
    submit(&mut s, "echo", "emq.echo");
    s.drain();
    // The custom jobmanager joins with a free slot: it gets an add, not the echo.
    inform_with(&mut s, "custom", Some(&["myapp.tasks.add"]));
    s.ready("custom", 5);
    assert_eq!(
        s.dispatched(),
        d(&[("custom", "add-0"), ("custom", "add-1"), ("custom", "add-2")])
    );
    s.ready("stock", 1);
    assert_eq!(s.dispatched(), d(&[("stock", "echo")]));
}
