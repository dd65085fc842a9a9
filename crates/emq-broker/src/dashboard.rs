//! The web dashboard (`--dashboard`, on the `--http` server): the overview
//! (live figures and throughput, from the snapshots the routing loop hands
//! over each second, polled by the page), queues, jobs, the dead-letter
//! set, schedules and workflows (asked of the router over its admin
//! protocol, [`link`]), and the changes an admin makes there (each a POST
//! to `/action` from a logged-in session with its CSRF token, [`access`]).
//!
//! It runs on the HTTP server's thread: the routing loop never waits for
//! it. Every page is HTML written with escaping by default ([`html`]),
//! served with a Content-Security-Policy that allows only this server's
//! own script and style (embedded in the binary: no build step, nothing
//! fetched from elsewhere).

mod access;
mod history;
mod html;
pub(crate) mod link;
mod pages;
mod svg;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use emq_http::{Method, Page, Request};
use emq_proto::graph::GraphList;
use emq_proto::views::{DeadList, JobPage, QueueChange, RouterStatus, ScheduleAction, ScheduleList};
use emq_proto::{ErrorCode, Message};
use log::{info, warn};
use serde_json::json;

use self::access::{Access, Denied, COOKIE};
use self::history::History;
use self::link::{AdminLink, AskError};
use self::pages::{Viewer, PAGE_SIZE};
use crate::metrics::{Process, Snapshot};

pub(crate) use self::access::MIN_TOKEN;

const APP_CSS: &str = include_str!("dashboard/assets/app.css");
const APP_JS: &str = include_str!("dashboard/assets/app.js");

/// Seconds of throughput the overview draws.
const CHART_SECONDS: usize = 300;

/// Sent with every dashboard page: only this server's own script, style
/// and requests; no framing; no referrer to other sites (same-origin, so that
/// the browser still names this origin in a form's `Origin`).
const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
];

const HTML: &str = "text/html; charset=utf-8";

/// The dashboard's state on the HTTP thread.
pub(crate) struct Dashboard {
    link: AdminLink,
    access: Access,
    history: History,
}

impl Dashboard {
    /// A dashboard asking the router through `link`; `token`: the admin
    /// token (`None`: read-only for everyone).
    pub(crate) fn new(link: AdminLink, token: Option<String>) -> Dashboard {
        Dashboard {
            link,
            access: Access::new(token),
            history: History::default(),
        }
    }

    /// Sample a snapshot taken `at` for the chart. Its own time, not the
    /// time it was read: the server thread may read two snapshots a few
    /// milliseconds apart, which would make a second's jobs look like a
    /// burst.
    pub(crate) fn record(&mut self, at: Instant, snapshot: &Snapshot) {
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.history
            .record(unix_now - at.elapsed().as_secs_f64(), &snapshot.status);
    }

    /// Answer `request`, or `None` when it is not the dashboard's.
    pub(crate) fn serve(&mut self, request: &Request, snapshot: Option<&Snapshot>) -> Option<Page> {
        let now = Instant::now();
        let page = match (request.method, request.path.as_str()) {
            (Some(Method::Get), "/assets/app.css") => Page::ok("text/css; charset=utf-8", APP_CSS.into()),
            (Some(Method::Get), "/assets/app.js") => Page::ok("text/javascript; charset=utf-8", APP_JS.into()),
            (Some(Method::Get), path) => {
                let viewer = self.viewer(request, now);
                self.get(path, request, &viewer, snapshot)?
            }
            (Some(Method::Post), "/login") => self.login(request, now),
            (Some(Method::Post), "/logout") => {
                let form = request.form();
                match self.access.authorize(request, &form, now) {
                    Ok(()) => {
                        self.access.logout(request);
                        redirect("/").header(
                            "Set-Cookie",
                            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
                        )
                    }
                    Err(denied) => self.denied(request, now, denied),
                }
            }
            (Some(Method::Post), "/action") => self.action(request, now),
            (Some(Method::Post), _) => return None,
            _ => Page::text(405, "GET or POST only\n"),
        };
        Some(SECURITY_HEADERS.iter().fold(page, |p, (n, v)| p.header(n, *v)))
    }

    fn viewer(&mut self, request: &Request, now: Instant) -> Viewer {
        let notice = request.param("done").map(|done| {
            let what = request.param("what").unwrap_or_default();
            let label = match done.as_str() {
                "pause" => "Paused",
                "resume" => "Resumed",
                "purge" => "Purged",
                "cancel" => "Cancelled",
                "retry" => "Re-queued",
                "discard" => "Discarded",
                "retry-all" => "Re-queued dead jobs",
                "discard-all" => "Discarded dead jobs",
                "schedule-pause" => "Paused schedule",
                "schedule-resume" => "Resumed schedule",
                "schedule-remove" => "Removed schedule",
                "graph-cancel" => "Cancelled workflow",
                _ => "Done",
            };
            format!("{label}: {what}")
        });
        Viewer {
            csrf: self.access.session(request, now),
            can_log_in: self.access.has_token(),
            notice,
        }
    }

    fn get(&mut self, path: &str, request: &Request, viewer: &Viewer, snapshot: Option<&Snapshot>) -> Option<Page> {
        let html = |body: String| Page::ok(HTML, body);
        Some(match path {
            "/" => match snapshot {
                Some(s) => html(pages::overview(viewer, &s.status, Process::resident_now())),
                None => Page::text(503, "starting\n"),
            },
            "/api/overview" => match snapshot {
                Some(s) => Page::ok("application/json", self.overview_json(&s.status).to_string()),
                None => Page::text(503, "starting\n"),
            },
            "/queues" => match self.link.view::<RouterStatus>(Message::Status) {
                Ok(status) => html(pages::queues(viewer, &status)),
                Err(e) => failure(viewer, &e),
            },
            "/queue" => {
                let Some(queue) = request.param("name") else {
                    return Some(redirect("/queues"));
                };
                let page: u64 = request.param("page").and_then(|p| p.parse().ok()).unwrap_or(0);
                let msg = Message::Waiting {
                    queue,
                    offset: page.saturating_mul(PAGE_SIZE),
                    limit: PAGE_SIZE,
                };
                match self.link.view::<JobPage>(msg) {
                    Ok(p) => html(pages::waiting(viewer, &p)),
                    Err(e) => failure(viewer, &e),
                }
            }
            "/job" => match request.param("id").filter(|id| !id.trim().is_empty()) {
                None => html(pages::job_search(viewer)),
                Some(id) => match self.link.ask(Message::Query {
                    of: id.trim().to_string(),
                }) {
                    Ok(Message::Job {
                        of,
                        state,
                        detail,
                        result,
                    }) => html(pages::job(viewer, &of, state, &detail, result.as_ref())),
                    Ok(other) => failure(viewer, &unexpected(&other)),
                    Err(e) => failure(viewer, &e),
                },
            },
            "/dead" => match self.link.view::<DeadList>(Message::Dead) {
                Ok(list) => html(pages::dead(viewer, &list)),
                Err(e) => failure(viewer, &e),
            },
            "/schedules" => match self.link.view::<ScheduleList>(Message::Schedules) {
                Ok(list) => html(pages::schedules(viewer, &list)),
                Err(e) => failure(viewer, &e),
            },
            "/graphs" => match self.link.view::<GraphList>(Message::Graphs) {
                Ok(list) => html(pages::graphs(viewer, &list)),
                Err(e) => failure(viewer, &e),
            },
            "/graph" => {
                let id = request.param("id").unwrap_or_default();
                match self.link.ask(Message::GraphQuery { id }) {
                    Ok(Message::GraphInfo { view }) => html(pages::graph(viewer, &view)),
                    Ok(other) => failure(viewer, &unexpected(&other)),
                    Err(e) => failure(viewer, &e),
                }
            }
            "/login" => html(pages::login(viewer, false)),
            _ => return None,
        })
    }

    /// What the overview page polls: its figures, tables and chart.
    fn overview_json(&self, status: &RouterStatus) -> serde_json::Value {
        let running: u64 = status.queues.values().map(|q| q.running).sum();
        let processed: u64 = status.queues.values().map(|q| q.processed).sum();
        let workers = status.workers();
        let queues: Vec<serde_json::Value> = status
            .queues
            .iter()
            .map(|(name, q)| {
                let (ok, failed) = (q.counts.ok(), q.counts.failed());
                json!({
                    "name": name, "waiting": q.waiting, "running": q.running, "processed": q.processed,
                    "ok": ok, "failed": failed, "dead": q.counts.dead, "paused": q.paused,
                })
            })
            .collect();
        let jobmanagers: Vec<serde_json::Value> = status
            .jobmanagers
            .iter()
            .map(|(id, jm)| {
                let queues: Vec<String> = jm.queues.iter().map(|(w, q)| format!("{w}:{q}")).collect();
                json!({
                    "id": id,
                    "kind": jm.kind.to_string(),
                    "state": jm.state.map_or("-", |s| s.as_str()),
                    "workers": jm.workers.map_or_else(|| "-".to_string(), |w| format!("{} / {}", w.busy, w.workers)),
                    "queued": jm.workers.map_or_else(|| "-".to_string(), |w| w.queued.to_string()),
                    "slots": jm.slots, "running": jm.running, "processed": jm.processed,
                    "last_seen": format!("{:.1}s ago", jm.last_seen_ms as f64 / 1000.0),
                    "queues": queues.join(", "),
                })
            })
            .collect();
        json!({
            "cards": {
                "uptime": pages::duration(status.uptime_s),
                "memory": pages::bytes(Process::resident_now()),
                "waiting": status.waiting_total.to_string(),
                "running": running.to_string(),
                "delayed": status.delayed.to_string(),
                "processed": processed.to_string(),
                "jobmanagers": status.jobmanagers.len().to_string(),
                "workers": format!("{} / {}", workers.busy, workers.workers),
            },
            "queues": queues,
            "jobmanagers": jobmanagers,
            "chart": self.history.chart(CHART_SECONDS),
        })
    }

    fn login(&mut self, request: &Request, now: Instant) -> Page {
        if !access::same_origin(request) {
            return self.denied(request, now, Denied::CrossOrigin);
        }
        let token = request
            .form()
            .into_iter()
            .find(|(n, _)| n == "token")
            .map(|(_, v)| v)
            .unwrap_or_default();
        match self.access.login(token.trim(), now) {
            Some(session) => {
                info!("dashboard: admin session opened");
                redirect("/").header(
                    "Set-Cookie",
                    format!("{COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict"),
                )
            }
            None => {
                warn!("dashboard: login refused (wrong token or none configured)");
                let viewer = self.viewer(&Request::default(), now);
                Page::with_status(403, HTML, pages::login(&viewer, true))
            }
        }
    }

    fn denied(&mut self, request: &Request, now: Instant, denied: Denied) -> Page {
        let viewer = Viewer {
            csrf: None,
            ..self.viewer(request, now)
        };
        Page::with_status(403, HTML, pages::error_page(&viewer, "Forbidden", denied.reason()))
    }

    /// POST /action: one change, by a session allowed to make it.
    fn action(&mut self, request: &Request, now: Instant) -> Page {
        let form = request.form();
        if let Err(denied) = self.access.authorize(request, &form, now) {
            let what = form.iter().find(|(n, _)| n == "do").map_or("", |(_, v)| v.as_str());
            warn!("dashboard: {what:?} refused: {}", denied.reason());
            return self.denied(request, now, denied);
        }
        let field = |name: &str| {
            form.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let what = field("do");
        let (queue, id, name) = (field("queue"), field("id"), field("name"));
        let done = |page: &str, target: &str| {
            let sep = if page.contains('?') { '&' } else { '?' };
            redirect(&format!(
                "{page}{sep}done={}&what={}",
                emq_http::percent_encode(&what),
                emq_http::percent_encode(target)
            ))
        };
        let job_page = format!("/job?id={}", emq_http::percent_encode(&id));
        let result: Result<Page, AskError> = match what.as_str() {
            "pause" | "resume" => {
                let change = QueueChange {
                    paused: Some(what == "pause"),
                    ..QueueChange::default()
                };
                let msg = Message::QueueSet {
                    queue: queue.clone(),
                    change,
                };
                self.link.ask(msg).map(|_| done("/queues", &queue))
            }
            "purge" => self
                .link
                .view::<emq_proto::views::Purged>(Message::Purge { queue: queue.clone() })
                .map(|p| done("/queues", &format!("{} ({} jobs)", p.queue, p.purged))),
            "cancel" => self
                .link
                .ask(Message::Cancel { of: id.clone() })
                .map(|_| done(&job_page, &id)),
            "retry" => self
                .link
                .ask(Message::Retry { of: id.clone() })
                .map(|_| done(&job_page, &id)),
            "discard" => self
                .link
                .ask(Message::Discard { of: id.clone() })
                .map(|_| done("/dead", &id)),
            "retry-all" | "discard-all" => self.all_dead(what == "retry-all").map(|(n, failed)| {
                let target = if failed > 0 {
                    format!("{n} jobs ({failed} refused)")
                } else {
                    format!("{n} jobs")
                };
                done("/dead", &target)
            }),
            "schedule-pause" | "schedule-resume" | "schedule-remove" => {
                let action = match what.as_str() {
                    "schedule-pause" => ScheduleAction::Pause,
                    "schedule-resume" => ScheduleAction::Resume,
                    _ => ScheduleAction::Remove,
                };
                let msg = Message::ScheduleCtl {
                    name: name.clone(),
                    action,
                };
                self.link.ask(msg).map(|_| done("/schedules", &name))
            }
            "graph-cancel" => self
                .link
                .ask(Message::GraphCancel { id: id.clone() })
                .map(|_| done(&format!("/graph?id={}", emq_http::percent_encode(&id)), &id)),
            _ => return Page::text(400, format!("unknown action {what:?}\n")),
        };
        match result {
            Ok(page) => {
                let target = [queue, id, name]
                    .into_iter()
                    .find(|t| !t.is_empty())
                    .unwrap_or_default();
                info!("dashboard: {what} {target}");
                page
            }
            Err(e) => {
                let viewer = self.viewer(request, now);
                failure(&viewer, &e)
            }
        }
    }

    /// Retry (or discard) every dead job, one command each: how many were
    /// done and how many refused (a graph's, or one that changed meanwhile).
    fn all_dead(&mut self, retry: bool) -> Result<(u64, u64), AskError> {
        let list: DeadList = self.link.view(Message::Dead)?;
        let (mut done, mut refused) = (0, 0);
        for d in list.dead {
            let msg = if retry {
                Message::Retry { of: d.id }
            } else {
                Message::Discard { of: d.id }
            };
            match self.link.ask(msg) {
                Ok(_) => done += 1,
                Err(AskError::Refused { .. }) => refused += 1,
                Err(e) => return Err(e),
            }
        }
        Ok((done, refused))
    }
}

fn redirect(location: &str) -> Page {
    Page::text(303, "").header("Location", location)
}

fn unexpected(msg: &Message) -> AskError {
    AskError::Broken(format!("unexpected {}", msg.command().as_str()))
}

/// The page for a command the router refused (404 for an unknown job,
/// 409 for any other refusal) or did not answer (502).
fn failure(viewer: &Viewer, e: &AskError) -> Page {
    let status = match e {
        AskError::Refused {
            code: ErrorCode::UnknownJob,
            ..
        } => 404,
        AskError::Refused { .. } => 409,
        AskError::Broken(_) => 502,
    };
    let title = if status == 404 { "Not found" } else { "Not done" };
    Page::with_status(status, HTML, pages::error_page(viewer, title, &e.to_string()))
}
