//! `emq-cli graph`: submit a workflow (a graph of jobs, or a batch with a
//! callback) from a JSON file, follow it, cancel it, draw it.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use emq_client::graph::{GraphFile, GraphState, GraphView};
use emq_client::{admin, printable, Graph, JobState};

use crate::conn::{ClientConn, Common};
use crate::exit::{Exit, Failure};
use crate::output::{print_json, shown, table};
use crate::Cli;

/// The `graph` commands.
#[derive(Subcommand, Debug)]
pub enum GraphCommand {
    /// Submit a graph or batch from a JSON file (README "Workflows").
    Submit(SubmitArgs),
    /// A graph's state: each node's state and attempts.
    Status(IdArgs),
    /// Cancel every node of a graph that has not started.
    Cancel(IdArgs),
    /// The graph in Graphviz DOT, nodes filled by state (`| dot -Tsvg`).
    Dot(IdArgs),
    /// The graph drawn as SVG, without Graphviz (layout-rs; for graphs of
    /// more than about 1,000 jobs, `graph dot ID | dot -Tsvg` is faster).
    Svg(SvgArgs),
    /// Every graph the router holds (admin).
    List(super::admin::AdminArgs),
}

/// `graph submit`'s arguments.
#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The graph (`{"nodes": [...]}`) or batch (`{"batch": {...}}`) file;
    /// `-` reads standard input.
    pub file: PathBuf,
    /// Wait for every node to end; exit 1 unless all finished.
    #[arg(long)]
    pub wait: bool,
    /// Seconds to wait with --wait.
    #[arg(long, default_value_t = 3600.0)]
    pub wait_timeout: f64,
    /// The router's client endpoint.
    #[command(flatten)]
    pub client: ClientConn,
    /// How to connect.
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of the commands about one graph.
#[derive(Args, Debug)]
pub struct IdArgs {
    /// The graph's id.
    pub id: String,
    /// The router's client endpoint.
    #[command(flatten)]
    pub client: ClientConn,
    /// How to connect.
    #[command(flatten)]
    pub common: Common,
}

/// `graph svg`'s arguments.
#[derive(Args, Debug)]
pub struct SvgArgs {
    /// The graph.
    #[command(flatten)]
    pub graph: IdArgs,
    /// Write it here instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Run a `graph` command.
pub fn run(cli: &Cli, command: &GraphCommand) -> Result<u8, Failure> {
    match command {
        GraphCommand::Submit(a) => submit(cli, a),
        GraphCommand::Status(a) => {
            let view = status(cli, a)?;
            print_view(cli, &view);
            Ok(Exit::Ok.code())
        }
        GraphCommand::Cancel(a) => {
            let conn = cli.conn.resolve(Some(&a.client), None, &a.common)?;
            let view = conn.client()?.cancel_graph(&a.id, conn.timeout())?;
            print_view(cli, &view);
            Ok(Exit::Ok.code())
        }
        GraphCommand::Dot(a) => {
            print!("{}", status(cli, a)?.to_dot());
            Ok(Exit::Ok.code())
        }
        GraphCommand::Svg(a) => {
            let svg = svg(&status(cli, &a.graph)?)?;
            match &a.output {
                Some(path) => std::fs::write(path, svg)
                    .map_err(|e| Failure::usage(format!("cannot write {}: {e}", path.display())))?,
                None => print!("{svg}"),
            }
            Ok(Exit::Ok.code())
        }
        GraphCommand::List(a) => {
            let conn = cli.conn.resolve(None, Some(&a.admin), &a.common)?;
            let list = admin::graphs(conn.admin(), conn.options())?;
            if cli.json {
                print_json(&list);
            } else {
                let mut t = table(
                    &["GRAPH", "STATE", "NODES", "FINISHED", "FAILED", "CANCELLED", "CREATED"],
                    &[2, 3, 4, 5],
                );
                for g in &list.graphs {
                    t.add_row(vec![
                        shown(&g.id),
                        g.state.to_string(),
                        g.counts.total.to_string(),
                        g.counts.finished.to_string(),
                        g.counts.failed.to_string(),
                        g.counts.cancelled.to_string(),
                        g.created.to_string(),
                    ]);
                }
                println!("{t}");
            }
            Ok(Exit::Ok.code())
        }
    }
}

fn status(cli: &Cli, a: &IdArgs) -> Result<GraphView, Failure> {
    let conn = cli.conn.resolve(Some(&a.client), None, &a.common)?;
    Ok(conn.client()?.graph_status(&a.id, conn.timeout())?)
}

/// Read the file, submit it, and with `--wait` follow it to its end.
fn submit(cli: &Cli, a: &SubmitArgs) -> Result<u8, Failure> {
    let text = if a.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| Failure::usage(format!("reading standard input: {e}")))?
    } else {
        std::fs::read_to_string(&a.file)
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", a.file.display())))?
    };
    let file: GraphFile = serde_json::from_str(&text)
        .map_err(|e| Failure::usage(format!("{}: not a graph or batch: {e}", a.file.display())))?;
    let spec = file.into_spec();
    // The router checks too; checking here names the problem without a
    // round trip.
    spec.check(usize::MAX)
        .map_err(|e| Failure::usage(format!("{}: {e}", a.file.display())))?;
    let conn = cli.conn.resolve(Some(&a.client), None, &a.common)?;
    let mut client = conn.client()?;
    let accepted = client.submit_graph(&Graph { spec })?;
    if !a.wait {
        print_view(cli, &accepted);
        return Ok(Exit::Ok.code());
    }
    if !cli.json {
        eprintln!(
            "emq-cli: graph {} accepted: {} job(s)",
            shown(&accepted.id),
            accepted.nodes.len()
        );
    }
    let timeout = super::secs("--wait-timeout", a.wait_timeout)?;
    let done = client.wait_graph(&accepted.id, timeout)?;
    print_view(cli, &done);
    Ok(match done.state {
        GraphState::Finished => Exit::Ok.code(),
        _ => Exit::JobFailed.code(),
    })
}

fn print_view(cli: &Cli, v: &GraphView) {
    if cli.json {
        return print_json(v);
    }
    let c = &v.counts;
    println!(
        "graph {}: {} ({}; {} nodes: {} finished, {} failed, {} cancelled, {} running, {} waiting, {} blocked)",
        shown(&v.id),
        v.state,
        v.on_failure,
        c.total,
        c.finished,
        c.failed,
        c.cancelled,
        c.running,
        c.waiting,
        c.blocked
    );
    let mut t = table(&["NODE", "STATE", "ATTEMPTS", "AFTER", "JOB", "NOTE"], &[2]);
    for n in &v.nodes {
        let note = match (&n.blocked_by, &n.error) {
            (Some(b), _) => format!("blocked by {}", shown(b)),
            (None, Some(e)) if n.state != JobState::Finished => shown(e),
            _ => String::new(),
        };
        t.add_row(vec![
            shown(&n.name),
            n.state.to_string(),
            n.attempts.to_string(),
            shown(&n.after.join(",")),
            shown(&n.id),
            note,
        ]);
    }
    println!("{t}");
}

/// The graph's DOT laid out and drawn by layout-rs.
fn svg(v: &GraphView) -> Result<String, Failure> {
    use layout::backends::svg::SVGWriter;
    use layout::gv::{DotParser, GraphBuilder};
    let dot = v.to_dot();
    let ast = DotParser::new(&dot)
        .process()
        .map_err(|e| Failure::usage(format!("drawing graph {}: {}", printable(&v.id), e)))?;
    let mut builder = GraphBuilder::new();
    builder.visit_graph(&ast);
    let mut drawing = builder.get();
    let mut writer = SVGWriter::new();
    drawing.do_it(false, false, false, &mut writer);
    Ok(writer.finalize())
}
