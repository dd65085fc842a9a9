//! The dashboard's pages as HTML, from the views the router answers with.
//! Pure rendering: every value goes through [`Html::text`]; change buttons
//! appear only in a session that may change things (they are forms that
//! POST to `/action` with the session's CSRF token).

use std::collections::BTreeMap;

use emq_proto::graph::{GraphList, GraphView};
use emq_proto::views::{DeadList, JobDetail, JobPage, RouterStatus, ScheduleList};
use emq_proto::{JobState, ResultFrames};

use super::html::Html;
use super::svg;

/// Jobs per page of a queue's waiting list.
pub(crate) const PAGE_SIZE: u64 = 50;

/// Most rows a list page shows (dead jobs, schedules, workflows); the
/// CLI lists them all.
pub(crate) const MAX_ROWS: usize = 500;

/// Above a list cut to [`MAX_ROWS`]: how many there are in all.
fn cut_note(h: &mut Html, total: usize, what: &'static str, cli: &'static str) {
    if total > MAX_ROWS {
        h.raw("<p class=\"note\" id=\"cut\">")
            .text(format!("showing the first {MAX_ROWS} of {total} {what}; "))
            .raw("<code>")
            .raw(cli)
            .raw("</code> lists them all</p>");
    }
}

/// What every page needs to know about who is looking.
#[derive(Debug, Clone, Default)]
pub(crate) struct Viewer {
    /// The session's CSRF token: `Some` when it may change things.
    pub csrf: Option<String>,
    /// Whether a token is configured (else nobody can log in).
    pub can_log_in: bool,
    /// A message to show once (after a change), as text.
    pub notice: Option<String>,
}

/// Which page the navigation marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Overview,
    Queues,
    Jobs,
    Dead,
    Schedules,
    Graphs,
    Login,
}

const NAV: [(Section, &str, &str); 6] = [
    (Section::Overview, "/", "Overview"),
    (Section::Queues, "/queues", "Queues"),
    (Section::Jobs, "/job", "Jobs"),
    (Section::Dead, "/dead", "Dead"),
    (Section::Schedules, "/schedules", "Schedules"),
    (Section::Graphs, "/graphs", "Workflows"),
];

/// A whole page: head, navigation, notice, `body`.
pub(crate) fn layout(title: &str, section: Section, viewer: &Viewer, body: impl FnOnce(&mut Html)) -> String {
    let mut h = Html::default();
    h.raw("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">")
        .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
        .raw("<title>")
        .text(title)
        .raw(" · emq</title><link rel=\"stylesheet\" href=\"/assets/app.css\">")
        .raw(
            "<script src=\"/assets/app.js\" defer></script></head><body><header><span class=\"brand\">emq</span><nav>",
        );
    for (s, href, label) in NAV {
        h.raw("<a href=\"").raw(href).raw("\"");
        if s == section {
            h.raw(" class=\"here\"");
        }
        h.raw(">").raw(label).raw("</a>");
    }
    h.raw("</nav><form class=\"find\" method=\"get\" action=\"/job\"><input name=\"id\" placeholder=\"job id\" aria-label=\"job id\"></form>");
    match &viewer.csrf {
        Some(csrf) => {
            h.raw(
                "<form class=\"who\" method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"",
            )
            .text(csrf)
            .raw("\"><span class=\"admin\">admin</span> <button>Log out</button></form>");
        }
        None if viewer.can_log_in => {
            h.raw("<span class=\"who\"><span id=\"readonly\">read-only</span> <a href=\"/login\">Log in</a></span>");
        }
        None => {
            h.raw("<span class=\"who\"><span id=\"readonly\">read-only</span></span>");
        }
    }
    h.raw("</header><main>");
    if let Some(n) = &viewer.notice {
        h.raw("<p class=\"notice\" id=\"notice\">").text(n).raw("</p>");
    }
    h.raw("<h1>").text(title).raw("</h1>");
    body(&mut h);
    h.raw("</main></body></html>");
    h.finish()
}

/// A page saying what went wrong.
pub(crate) fn error_page(viewer: &Viewer, title: &str, message: &str) -> String {
    layout(title, Section::Overview, viewer, |h| {
        h.raw("<p class=\"error\" id=\"error\">").text(message).raw("</p>");
    })
}

/// A change button: a form POSTing `action` with `fields` to `/action`, or
/// nothing in a read-only session. `confirm`: the question asked first.
pub(crate) fn action(
    h: &mut Html,
    viewer: &Viewer,
    action: &'static str,
    fields: &[(&'static str, &str)],
    label: &'static str,
    confirm: Option<&'static str>,
) {
    let Some(csrf) = &viewer.csrf else {
        return;
    };
    h.raw("<form class=\"act\" method=\"post\" action=\"/action\"");
    if let Some(q) = confirm {
        h.raw(" data-confirm=\"").raw(q).raw("\"");
    }
    h.raw("><input type=\"hidden\" name=\"csrf\" value=\"")
        .text(csrf)
        .raw("\"><input type=\"hidden\" name=\"do\" value=\"")
        .raw(action)
        .raw("\">");
    for (name, value) in fields {
        h.raw("<input type=\"hidden\" name=\"")
            .raw(name)
            .raw("\" value=\"")
            .text(value)
            .raw("\">");
    }
    h.raw("<button data-action=\"")
        .raw(action)
        .raw("\">")
        .raw(label)
        .raw("</button></form>");
}

pub(crate) fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// Seconds as `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
pub(crate) fn duration(s: u64) -> String {
    match s {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// The overview: figures, the chart (drawn by app.js), queues, jobmanagers.
pub(crate) fn overview(viewer: &Viewer, status: &RouterStatus, resident: u64) -> String {
    layout("Overview", Section::Overview, viewer, |h| {
        let running: u64 = status.queues.values().map(|q| q.running).sum();
        let workers = status.workers();
        h.raw("<div class=\"cards\" id=\"cards\">");
        let cards: [(&str, &str, String); 8] = [
            ("uptime", "Uptime", duration(status.uptime_s)),
            ("memory", "Router memory", bytes(resident)),
            ("waiting", "Waiting", status.waiting_total.to_string()),
            ("running", "Running", running.to_string()),
            ("delayed", "Delayed", status.delayed.to_string()),
            (
                "processed",
                "Processed",
                status.queues.values().map(|q| q.processed).sum::<u64>().to_string(),
            ),
            ("jobmanagers", "Jobmanagers", status.jobmanagers.len().to_string()),
            (
                "workers",
                "Workers busy",
                format!("{} / {}", workers.busy, workers.workers),
            ),
        ];
        for (key, label, value) in cards {
            h.raw("<div class=\"card\"><div class=\"label\">")
                .text(label)
                .raw("</div><div class=\"value\" data-k=\"")
                .text(key)
                .raw("\">")
                .text(value)
                .raw("</div></div>");
        }
        h.raw("</div><section><h2>Throughput (jobs/s, last 5 minutes)</h2>")
            .raw("<svg id=\"chart\" class=\"chart\" viewBox=\"0 0 900 220\" preserveAspectRatio=\"none\"></svg>")
            .raw("<div id=\"legend\" class=\"legend\"></div></section>");
        h.raw("<section><h2>Queues</h2>");
        queue_table(h, viewer, status, false);
        h.raw("</section><section><h2>Jobmanagers</h2>");
        jobmanager_table(h, status);
        h.raw("</section>");
    })
}

const QUEUE_COLUMNS: &str = "<tr><th>Queue</th><th>Waiting</th><th>Running</th><th>Processed</th><th>OK</th><th>Failed</th><th>Dead</th><th>State</th>";

/// The queues table; with `controls`, limits and the change buttons.
pub(crate) fn queue_table(h: &mut Html, viewer: &Viewer, status: &RouterStatus, controls: bool) {
    h.raw("<table id=\"queues\"><thead>").raw(QUEUE_COLUMNS);
    if controls {
        h.raw("<th>Concurrency</th><th>Rate</th><th>Jobmanagers</th><th></th>");
    }
    h.raw("</tr></thead><tbody>");
    for (name, q) in &status.queues {
        let (ok, failed) = (q.counts.ok(), q.counts.failed());
        h.raw("<tr data-queue=\"").text(name).raw("\"><td>");
        h.link("/queue", "name", name, name);
        h.raw("</td>")
            .num(q.waiting)
            .num(q.running)
            .num(q.processed)
            .num(ok)
            .num(failed)
            .num(q.counts.dead);
        if q.paused {
            h.raw("<td class=\"paused\">PAUSED</td>");
        } else {
            h.raw("<td>active</td>");
        }
        if controls {
            h.td(q.concurrency.map_or_else(|| "-".into(), |c| c.to_string()));
            h.td(q
                .rate
                .map_or_else(|| "-".into(), |r| format!("{} per {} ms", r.jobs, r.per_ms)));
            h.td(q.jobmanagers.len());
            h.raw("<td class=\"acts\">");
            if q.paused {
                action(h, viewer, "resume", &[("queue", name)], "Resume", None);
            } else {
                action(h, viewer, "pause", &[("queue", name)], "Pause", None);
            }
            action(
                h,
                viewer,
                "purge",
                &[("queue", name)],
                "Purge",
                Some("Cancel every job waiting in this queue?"),
            );
            h.raw("</td>");
        }
        h.raw("</tr>");
    }
    h.raw("</tbody></table>");
}

fn jobmanager_table(h: &mut Html, status: &RouterStatus) {
    h.raw("<table id=\"jobmanagers\"><thead><tr><th>Jobmanager</th><th>Kind</th><th>State</th><th>Workers busy</th><th>Held</th><th>Slots</th><th>Running</th><th>Processed</th><th>Last seen</th><th>Queues</th></tr></thead><tbody>");
    for (id, jm) in &status.jobmanagers {
        let queues: Vec<String> = jm.queues.iter().map(|(w, q)| format!("{w}:{q}")).collect();
        h.raw("<tr>").td(id).td(jm.kind);
        h.td(jm.state.map_or_else(|| "-".to_string(), |s| s.as_str().to_string()));
        match jm.workers {
            Some(w) => h.num(format!("{} / {}", w.busy, w.workers)).num(w.queued),
            None => h.num("-").num("-"),
        };
        h.num(jm.slots)
            .num(jm.running)
            .num(jm.processed)
            .num(format!("{:.1}s ago", jm.last_seen_ms as f64 / 1000.0))
            .td(queues.join(", "))
            .raw("</tr>");
    }
    h.raw("</tbody></table>");
}

/// The queues page.
pub(crate) fn queues(viewer: &Viewer, status: &RouterStatus) -> String {
    layout("Queues", Section::Queues, viewer, |h| {
        if status.queues.is_empty() {
            h.raw("<p>No queue yet: queues appear when a job or a jobmanager names them.</p>");
        }
        queue_table(h, viewer, status, true);
    })
}

/// A queue's waiting jobs, a page at a time.
pub(crate) fn waiting(viewer: &Viewer, page: &JobPage) -> String {
    let title = format!("Queue {}", page.queue);
    layout(&title, Section::Queues, viewer, |h| {
        let end = page.offset + page.jobs.len() as u64;
        h.raw("<p id=\"page-info\">")
            .text(format!(
                "{} waiting; showing {}–{}",
                page.total,
                if page.jobs.is_empty() { page.offset } else { page.offset + 1 },
                end
            ))
            .raw("</p><table id=\"waiting\"><thead><tr><th>Job</th><th>Handler</th><th>Guaranteed</th><th>Attempts</th><th>Waited</th><th></th></tr></thead><tbody>");
        for j in &page.jobs {
            h.raw("<tr><td>");
            h.link("/job", "id", &j.id, &j.id);
            h.raw("</td>")
                .td(j.handler.as_deref().unwrap_or("?"))
                .td(if j.guaranteed { "yes" } else { "no" })
                .num(j.attempts)
                .num(j.waited_ms.map_or_else(|| "-".into(), |ms| duration(ms / 1000)))
                .raw("<td>");
            action(
                h,
                viewer,
                "cancel",
                &[("id", &j.id)],
                "Cancel",
                Some("Cancel this job?"),
            );
            h.raw("</td></tr>");
        }
        h.raw("</tbody></table><p class=\"pager\">");
        let number = page.offset / PAGE_SIZE;
        let href = |n: u64| format!("page={n}");
        if number > 0 {
            h.raw("<a rel=\"prev\" href=\"/queue?name=")
                .text(emq_http::percent_encode(&page.queue))
                .raw("&amp;")
                .text(href(number - 1))
                .raw("\">← newer page</a> ");
        }
        if end < page.total {
            h.raw("<a rel=\"next\" href=\"/queue?name=")
                .text(emq_http::percent_encode(&page.queue))
                .raw("&amp;")
                .text(href(number + 1))
                .raw("\">older page →</a>");
        }
        h.raw("</p>");
    })
}

/// The job search page (no id given yet).
pub(crate) fn job_search(viewer: &Viewer) -> String {
    layout("Jobs", Section::Jobs, viewer, |h| {
        h.raw("<form method=\"get\" action=\"/job\"><label>Job id <input name=\"id\" autofocus></label> <button>Look up</button></form>")
            .raw("<p>Waiting jobs are listed per queue on the <a href=\"/queues\">Queues</a> page.</p>");
    })
}

fn row(h: &mut Html, label: &'static str, value: impl std::fmt::Display) {
    h.raw("<tr><th>")
        .raw(label)
        .raw("</th><td>")
        .text(value)
        .raw("</td></tr>");
}

/// One job: state, detail, body, result, log.
pub(crate) fn job(
    viewer: &Viewer,
    id: &str,
    state: JobState,
    detail: &JobDetail,
    result: Option<&ResultFrames>,
) -> String {
    let title = format!("Job {id}");
    layout(&title, Section::Jobs, viewer, |h| {
        h.raw("<table class=\"kv\" id=\"job\"><tbody>");
        h.raw("<tr><th>State</th><td id=\"state\" class=\"")
            .raw(svg::state_class(state))
            .raw("\">")
            .text(state)
            .raw("</td></tr><tr><th>Queue</th><td>");
        h.link("/queue", "name", &detail.queue, &detail.queue);
        h.raw("</td></tr>");
        if let Some(handler) = &detail.handler {
            h.raw("<tr><th>Handler</th><td id=\"handler\">")
                .text(handler)
                .raw("</td></tr>");
        }
        row(h, "Guaranteed", if detail.guaranteed { "yes" } else { "no" });
        if let Some(a) = detail.attempts {
            row(
                h,
                "Attempts",
                format!(
                    "{a} of {}",
                    detail.max_attempts.map_or_else(|| "?".into(), |m| m.to_string())
                ),
            );
        }
        if let Some(jm) = &detail.jobmanager {
            row(h, "Jobmanager", jm);
        }
        if let Some(t) = &detail.not_before {
            row(h, "Not before", t);
        }
        if let Some(t) = &detail.expires {
            row(h, "Expires", t);
        }
        if let Some(k) = &detail.key {
            row(h, "Key", k);
        }
        if let Some(headers) = &detail.headers {
            row(h, "Headers", if headers.is_empty() { "(none)" } else { headers });
        }
        h.raw("</tbody></table><div class=\"acts\">");
        if matches!(
            state,
            JobState::Queued | JobState::Scheduled | JobState::Accepted | JobState::Blocked
        ) {
            action(h, viewer, "cancel", &[("id", id)], "Cancel", Some("Cancel this job?"));
        }
        if state == JobState::Dead {
            action(h, viewer, "retry", &[("id", id)], "Retry", None);
            action(
                h,
                viewer,
                "discard",
                &[("id", id)],
                "Discard",
                Some("Drop this dead job for good?"),
            );
        }
        h.raw("</div>");
        if let Some(body) = &detail.body {
            h.raw("<h2>Body</h2>");
            let whole = detail.body_bytes.unwrap_or(0);
            if whole > body.len() as u64 {
                h.raw("<p class=\"note\">")
                    .text(format!("first {} of {whole} bytes", body.len()))
                    .raw("</p>");
            }
            h.raw("<pre id=\"body\">").text(body).raw("</pre>");
        }
        if let Some(r) = result {
            h.raw("<h2>Result</h2><p>")
                .text(format!("{} ({})", r.outcome.as_str(), r.content_type.as_str()))
                .raw("</p>");
            let preview = emq_proto::views::body_preview(&r.body);
            if r.body.len() > preview.len() {
                h.raw("<p class=\"note\">")
                    .text(format!("first {} of {} bytes", preview.len(), r.body.len()))
                    .raw("</p>");
            }
            h.raw("<pre id=\"result\">").text(preview).raw("</pre>");
        }
        if !detail.log.is_empty() {
            h.raw("<h2>Log</h2><table id=\"log\"><thead><tr><th>Time</th><th>State</th><th>What happened</th></tr></thead><tbody>");
            for e in &detail.log {
                h.raw("<tr>").td(e.time).td(e.status).td(&e.message).raw("</tr>");
            }
            h.raw("</tbody></table>");
        }
    })
}

/// The dead-letter set.
pub(crate) fn dead(viewer: &Viewer, list: &DeadList) -> String {
    layout("Dead jobs", Section::Dead, viewer, |h| {
        if list.dead.is_empty() {
            h.raw("<p id=\"empty\">No dead-lettered jobs.</p>");
            return;
        }
        h.raw("<div class=\"acts\">");
        action(
            h,
            viewer,
            "retry-all",
            &[],
            "Retry all",
            Some("Put every dead job back in its queue?"),
        );
        action(
            h,
            viewer,
            "discard-all",
            &[],
            "Discard all",
            Some("Drop every dead job for good?"),
        );
        h.raw("</div>");
        cut_note(h, list.dead.len(), "dead jobs", "emq-cli dead");
        h.raw("<table id=\"dead\"><thead><tr><th>Job</th><th>Queue</th><th>Attempts</th><th>Last</th><th></th></tr></thead><tbody>");
        for d in list.dead.iter().take(MAX_ROWS) {
            h.raw("<tr data-id=\"").text(&d.id).raw("\"><td>");
            h.link("/job", "id", &d.id, &d.id);
            h.raw("</td>")
                .td(&d.queue)
                .num(d.attempts)
                .td(d.last.as_deref().unwrap_or(""))
                .raw("<td class=\"acts\">");
            action(h, viewer, "retry", &[("id", &d.id)], "Retry", None);
            action(
                h,
                viewer,
                "discard",
                &[("id", &d.id)],
                "Discard",
                Some("Drop this dead job for good?"),
            );
            h.raw("</td></tr>");
        }
        h.raw("</tbody></table>");
    })
}

/// The schedules.
pub(crate) fn schedules(viewer: &Viewer, list: &ScheduleList) -> String {
    layout("Schedules", Section::Schedules, viewer, |h| {
        if list.schedules.is_empty() {
            h.raw("<p>No schedules. Create one with <code>emq-cli schedule add</code>.</p>");
            return;
        }
        cut_note(h, list.schedules.len(), "schedules", "emq-cli schedule list");
        h.raw("<table id=\"schedules\"><thead><tr><th>Name</th><th>Queue</th><th>Handler</th><th>When</th><th>Next fire</th><th>Fires</th><th>Last job</th><th>State</th><th></th></tr></thead><tbody>");
        for s in list.schedules.iter().take(MAX_ROWS) {
            let when = match (&s.cron, s.every_ms) {
                (Some(c), _) => format!("cron {c} ({})", s.tz.as_deref().unwrap_or("UTC")),
                (None, Some(ms)) => format!("every {}", duration(ms / 1000)),
                _ => "-".into(),
            };
            h.raw("<tr data-name=\"").text(&s.name).raw("\">");
            h.td(&s.name).td(&s.queue).td(&s.handler).td(when);
            h.td(s.next.map_or_else(|| "-".into(), |t| t.to_string()));
            h.num(s.fires).raw("<td>");
            if let Some(j) = &s.last_job {
                h.link(
                    "/job",
                    "id",
                    j,
                    s.last_outcome.map_or_else(|| j.clone(), |o| format!("{j} ({o})")),
                );
            }
            h.raw("</td>");
            if s.paused {
                h.raw("<td class=\"paused\">PAUSED</td>");
            } else {
                h.raw("<td>active</td>");
            }
            h.raw("<td class=\"acts\">");
            if s.paused {
                action(h, viewer, "schedule-resume", &[("name", &s.name)], "Resume", None);
            } else {
                action(h, viewer, "schedule-pause", &[("name", &s.name)], "Pause", None);
            }
            action(
                h,
                viewer,
                "schedule-remove",
                &[("name", &s.name)],
                "Remove",
                Some("Remove this schedule?"),
            );
            h.raw("</td></tr>");
        }
        h.raw("</tbody></table>");
    })
}

/// The workflows.
pub(crate) fn graphs(viewer: &Viewer, list: &GraphList) -> String {
    layout("Workflows", Section::Graphs, viewer, |h| {
        if list.graphs.is_empty() {
            h.raw("<p>No workflows. Submit one with <code>emq-cli graph submit</code>.</p>");
            return;
        }
        cut_note(h, list.graphs.len(), "workflows", "emq-cli graph list");
        h.raw("<table id=\"graphs\"><thead><tr><th>Graph</th><th>State</th><th>Created</th><th>Ended</th><th>Nodes</th></tr></thead><tbody>");
        for g in list.graphs.iter().take(MAX_ROWS) {
            h.raw("<tr><td>");
            h.link("/graph", "id", &g.id, &g.id);
            h.raw("</td>").td(g.state).td(g.created);
            h.td(g.ended.map_or_else(|| "-".into(), |t| t.to_string()));
            h.td(counts(&g.counts)).raw("</tr>");
        }
        h.raw("</tbody></table>");
    })
}

fn counts(c: &emq_proto::graph::GraphCounts) -> String {
    let parts: BTreeMap<&str, usize> = [
        ("blocked", c.blocked),
        ("waiting", c.waiting),
        ("running", c.running),
        ("finished", c.finished),
        ("failed", c.failed),
        ("cancelled", c.cancelled),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect();
    parts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One workflow: its drawing and its nodes.
pub(crate) fn graph(viewer: &Viewer, g: &GraphView) -> String {
    let title = format!("Workflow {}", g.id);
    layout(&title, Section::Graphs, viewer, |h| {
        h.raw("<p>")
            .text(format!("{} ({}), {}", g.state, g.on_failure, counts(&g.counts)))
            .raw("</p><div class=\"acts\">");
        if g.state == emq_proto::graph::GraphState::Running {
            action(
                h,
                viewer,
                "graph-cancel",
                &[("id", &g.id)],
                "Cancel",
                Some("Cancel every node not yet ended?"),
            );
        }
        h.raw("</div><div class=\"drawing\">");
        if svg::draw(g, h).is_none() {
            h.raw("<p>")
                .text(format!(
                    "{} nodes: too many to draw (the table lists them).",
                    g.nodes.len()
                ))
                .raw("</p>");
        }
        h.raw("</div>");
        cut_note(h, g.nodes.len(), "nodes", "emq-cli graph status ID");
        h.raw("<table id=\"nodes\"><thead><tr><th>Node</th><th>Job</th><th>State</th><th>Attempts</th><th>Handler</th><th>Queue</th><th>After</th><th>Why</th></tr></thead><tbody>");
        for n in g.nodes.iter().take(MAX_ROWS) {
            h.raw("<tr>").td(&n.name).raw("<td>");
            h.link("/job", "id", &n.id, &n.id);
            h.raw("</td><td class=\"")
                .raw(svg::state_class(n.state))
                .raw("\">")
                .text(n.state)
                .raw("</td>")
                .num(n.attempts)
                .td(&n.handler)
                .td(&n.queue)
                .td(n.after.join(", "))
                .td(n.error.as_deref().or(n.blocked_by.as_deref()).unwrap_or(""))
                .raw("</tr>");
        }
        h.raw("</tbody></table>");
    })
}

/// The login form.
pub(crate) fn login(viewer: &Viewer, failed: bool) -> String {
    layout("Log in", Section::Login, viewer, |h| {
        if !viewer.can_log_in {
            h.raw("<p>This dashboard is read-only: the router was started without <code>--dashboard-token-file</code>.</p>");
            return;
        }
        if failed {
            h.raw("<p class=\"error\" id=\"error\">Wrong token.</p>");
        }
        h.raw("<form method=\"post\" action=\"/login\"><label>Admin token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" autofocus></label> <button id=\"login\">Log in</button></form>")
            .raw("<p>The token is the first line of the router's <code>--dashboard-token-file</code>. Without it the pages are read-only.</p>");
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use emq_proto::views::{DeadJob, LogEntry, QueueStatus};
    use emq_proto::{ContentType, Outcome};

    const EVIL: &str = "<script>window.pwned=1</script>";

    fn admin() -> Viewer {
        Viewer {
            csrf: Some("c0ffee".into()),
            can_log_in: true,
            notice: Some(EVIL.into()),
        }
    }

    fn no_markup_from_peers(page: &str) {
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"), "the text is shown, escaped");
    }

    #[test]
    fn peer_text_is_escaped_everywhere() {
        let mut status = RouterStatus::default();
        status.queues.insert(EVIL.into(), QueueStatus::default());
        no_markup_from_peers(&overview(&admin(), &status, 0));
        no_markup_from_peers(&queues(&admin(), &status));
        let detail = JobDetail {
            queue: EVIL.into(),
            handler: Some(EVIL.into()),
            headers: Some(EVIL.into()),
            body: Some(EVIL.into()),
            log: vec![LogEntry {
                time: jiff::Timestamp::UNIX_EPOCH,
                status: JobState::Dead,
                message: EVIL.into(),
            }],
            ..JobDetail::default()
        };
        let result = ResultFrames {
            of: "j".into(),
            outcome: Outcome::Failed,
            content_type: ContentType::Json,
            body: EVIL.as_bytes().to_vec(),
        };
        let page = job(&admin(), EVIL, JobState::Dead, &detail, Some(&result));
        no_markup_from_peers(&page);
        assert!(page.contains("data-action=\"retry\"") && page.contains("data-action=\"discard\""));
        let list = DeadList {
            dead: vec![DeadJob {
                id: EVIL.into(),
                queue: EVIL.into(),
                attempts: 1,
                last: Some(EVIL.into()),
            }],
        };
        no_markup_from_peers(&dead(&admin(), &list));
    }

    #[test]
    fn long_lists_are_cut_and_say_so() {
        let list = DeadList {
            dead: (0..MAX_ROWS + 7)
                .map(|i| DeadJob {
                    id: format!("job-{i}"),
                    queue: "q".into(),
                    attempts: 1,
                    last: None,
                })
                .collect(),
        };
        let page = dead(&admin(), &list);
        assert_eq!(page.matches("<tr data-id=").count(), MAX_ROWS);
        assert!(page.contains(&format!("showing the first {MAX_ROWS} of {} dead jobs", MAX_ROWS + 7)));
        let short = DeadList {
            dead: list.dead[..3].to_vec(),
        };
        assert!(!dead(&admin(), &short).contains("id=\"cut\""));
    }

    #[test]
    fn a_read_only_viewer_gets_no_change_buttons() {
        let mut status = RouterStatus::default();
        status.queues.insert("q".into(), QueueStatus::default());
        let viewer = Viewer {
            csrf: None,
            can_log_in: true,
            notice: None,
        };
        let page = queues(&viewer, &status);
        assert!(!page.contains("action=\"/action\""), "{page}");
        assert!(page.contains("href=\"/login\""));
        let page = queues(&admin(), &status);
        assert!(page.contains("data-action=\"pause\"") && page.contains("name=\"csrf\" value=\"c0ffee\""));
    }
}
