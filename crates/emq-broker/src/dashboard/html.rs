//! HTML written with every value escaped: [`Html::raw`] takes only
//! `&'static str` (markup written here), [`Html::text`] escapes whatever it
//! is given, so text from a peer or a job (queue names, handler names,
//! results) can only ever be text.

use std::fmt::{Display, Write};

/// An HTML document or fragment being written.
#[derive(Debug, Default)]
pub(crate) struct Html(String);

impl Html {
    /// Markup written in this crate.
    pub(crate) fn raw(&mut self, markup: &'static str) -> &mut Html {
        self.0.push_str(markup);
        self
    }

    /// Text, escaped (also safe inside a quoted attribute value).
    pub(crate) fn text(&mut self, value: impl Display) -> &mut Html {
        struct Escaper<'a>(&'a mut String);
        impl Write for Escaper<'_> {
            fn write_str(&mut self, s: &str) -> std::fmt::Result {
                for c in s.chars() {
                    match c {
                        '&' => self.0.push_str("&amp;"),
                        '<' => self.0.push_str("&lt;"),
                        '>' => self.0.push_str("&gt;"),
                        '"' => self.0.push_str("&quot;"),
                        '\'' => self.0.push_str("&#39;"),
                        c => self.0.push(c),
                    }
                }
                Ok(())
            }
        }
        let _ = write!(Escaper(&mut self.0), "{value}");
        self
    }

    /// A link to a page of this dashboard: `path` (written here) with one
    /// query parameter, its value percent-encoded, and `label` as text.
    pub(crate) fn link(
        &mut self,
        path: &'static str,
        param: &'static str,
        value: &str,
        label: impl Display,
    ) -> &mut Html {
        self.raw("<a href=\"")
            .raw(path)
            .raw("?")
            .raw(param)
            .raw("=")
            .text(emq_http::percent_encode(value))
            .raw("\">")
            .text(label)
            .raw("</a>")
    }

    /// A table cell holding `value` as text.
    pub(crate) fn td(&mut self, value: impl Display) -> &mut Html {
        self.raw("<td>").text(value).raw("</td>")
    }

    /// A right-aligned (numeric) table cell.
    pub(crate) fn num(&mut self, value: impl Display) -> &mut Html {
        self.raw("<td class=\"n\">").text(value).raw("</td>")
    }

    /// What was written.
    pub(crate) fn finish(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_links_cannot_inject_markup() {
        let mut h = Html::default();
        h.raw("<p title=\"")
            .text("\"><script>alert(1)</script>")
            .raw("\">")
            .text("<img src=x onerror=alert(1)> & 'q'")
            .raw("</p>");
        h.link("/job", "id", "a\"><script>&b=c", "<b>");
        let out = h.finish();
        assert!(!out.contains("<script"), "{out}");
        assert!(!out.contains("<img"), "{out}");
        assert!(!out.contains("<b>"), "{out}");
        assert!(
            out.contains("&lt;img src=x onerror=alert(1)&gt; &amp; &#39;q&#39;"),
            "{out}"
        );
        assert!(out.contains("href=\"/job?id=a%22%3E%3Cscript%3E%26b%3Dc\""), "{out}");
    }
}
