//! A workflow drawn as SVG: nodes in columns by depth (a node sits one
//! column right of its deepest parent), edges from parent to child, each
//! node coloured by its state. Names are escaped text ([`Html`]).

use std::collections::HashMap;

use emq_proto::graph::GraphView;
use emq_proto::JobState;

use super::html::Html;

/// Graphs with more nodes are not drawn (the node table lists them).
pub(crate) const MAX_DRAWN: usize = 400;

const W: usize = 170;
const H: usize = 44;
const GAP_X: usize = 60;
const GAP_Y: usize = 16;
const MARGIN: usize = 10;

/// The CSS class of a node in `state`.
pub(crate) fn state_class(state: JobState) -> &'static str {
    match state {
        JobState::Finished => "s-ok",
        JobState::Failed | JobState::Dead | JobState::Expired => "s-bad",
        JobState::Running => "s-run",
        JobState::Cancelled | JobState::Superseded => "s-off",
        _ => "s-wait",
    }
}

/// `graph` as an `<svg>` element, or `None` past [`MAX_DRAWN`] nodes.
pub(crate) fn draw(graph: &GraphView, out: &mut Html) -> Option<()> {
    if graph.nodes.len() > MAX_DRAWN {
        return None;
    }
    let index: HashMap<&str, usize> = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    // Depths in submission order repeated until stable: a graph is acyclic
    // (the router checked), so at most one pass per level.
    let mut depth = vec![0usize; graph.nodes.len()];
    for _ in 0..graph.nodes.len() {
        let mut changed = false;
        for (i, n) in graph.nodes.iter().enumerate() {
            let d = n
                .after
                .iter()
                .filter_map(|p| index.get(p.as_str()))
                .map(|&p| depth[p] + 1)
                .max()
                .unwrap_or(0);
            if d != depth[i] {
                depth[i] = d;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut row_in_column: HashMap<usize, usize> = HashMap::new();
    let pos: Vec<(usize, usize)> = depth
        .iter()
        .map(|&d| {
            let row = row_in_column.entry(d).or_default();
            let p = (MARGIN + d * (W + GAP_X), MARGIN + *row * (H + GAP_Y));
            *row += 1;
            p
        })
        .collect();
    let columns = depth.iter().max().map_or(0, |d| d + 1);
    let rows = row_in_column.values().max().copied().unwrap_or(0);
    let width = 2 * MARGIN + columns * W + columns.saturating_sub(1) * GAP_X;
    let height = 2 * MARGIN + rows * H + rows.saturating_sub(1) * GAP_Y;
    out.raw("<svg class=\"graph\" xmlns=\"http://www.w3.org/2000/svg\" width=\"")
        .text(width)
        .raw("\" height=\"")
        .text(height)
        .raw("\" viewBox=\"0 0 ")
        .text(width)
        .raw(" ")
        .text(height)
        .raw("\">");
    for (i, n) in graph.nodes.iter().enumerate() {
        for p in n.after.iter().filter_map(|p| index.get(p.as_str())) {
            let (x1, y1) = (pos[*p].0 + W, pos[*p].1 + H / 2);
            let (x2, y2) = (pos[i].0, pos[i].1 + H / 2);
            let mid = (x1 + x2) / 2;
            out.raw("<path class=\"edge\" d=\"M")
                .text(format!("{x1} {y1} C{mid} {y1} {mid} {y2} {x2} {y2}"))
                .raw("\"/>");
        }
    }
    for (i, n) in graph.nodes.iter().enumerate() {
        let (x, y) = pos[i];
        out.raw("<g class=\"node ")
            .raw(state_class(n.state))
            .raw("\"><title>")
            .text(&n.name)
            .raw(" (")
            .text(&n.handler)
            .raw("): ")
            .text(n.state)
            .raw("</title><rect x=\"")
            .text(x)
            .raw("\" y=\"")
            .text(y)
            .raw("\" width=\"")
            .text(W)
            .raw("\" height=\"")
            .text(H)
            .raw("\" rx=\"6\"/><text x=\"")
            .text(x + 8)
            .raw("\" y=\"")
            .text(y + 18)
            .raw("\">")
            .text(shorten(&n.name, 24))
            .raw("</text><text class=\"state\" x=\"")
            .text(x + 8)
            .raw("\" y=\"")
            .text(y + 36)
            .raw("\">")
            .text(n.state)
            .raw("</text></g>");
    }
    out.raw("</svg>");
    Some(())
}

/// `s` cut to `max` characters, with an ellipsis.
pub(crate) fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emq_proto::graph::{FailurePolicy, GraphCounts, GraphNodeView, GraphState};

    fn node(name: &str, after: &[&str], state: JobState) -> GraphNodeView {
        GraphNodeView {
            name: name.into(),
            id: format!("g/{name}"),
            state,
            attempts: 0,
            handler: "h<script>".into(),
            queue: "q".into(),
            after: after.iter().map(|s| s.to_string()).collect(),
            blocked_by: None,
            error: None,
        }
    }

    #[test]
    fn nodes_sit_right_of_their_deepest_parent_and_names_are_text() {
        let graph = GraphView {
            id: "g".into(),
            state: GraphState::Running,
            on_failure: FailurePolicy::FailFast,
            created: jiff::Timestamp::UNIX_EPOCH,
            ended: None,
            counts: GraphCounts::default(),
            nodes: vec![
                node("<script>alert(1)</script>", &[], JobState::Finished),
                node("b", &["<script>alert(1)</script>"], JobState::Running),
                node("c", &["<script>alert(1)</script>", "b"], JobState::Queued),
            ],
        };
        let mut out = Html::default();
        draw(&graph, &mut out).unwrap();
        let svg = out.finish();
        assert!(!svg.contains("<script"), "{svg}");
        assert_eq!(svg.matches("class=\"edge\"").count(), 3);
        // Depths 0, 1, 2: c is in the third column.
        let x_of_c = MARGIN + 2 * (W + GAP_X);
        assert!(svg.contains(&format!("<rect x=\"{x_of_c}\"")), "{svg}");
        assert!(svg.contains("node s-ok") && svg.contains("node s-run") && svg.contains("node s-wait"));
    }
}
