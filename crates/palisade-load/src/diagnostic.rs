//! Rendering problems for people: miette reports with a code frame at file:line:column.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceCode};
use palisade_core::field::{Problem, Severity};

use crate::source::Source;

struct Report {
    problem: Problem,
    source: Option<NamedSource<Arc<str>>>,
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.problem.message)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.problem;
        match &p.location {
            Some(l) => write!(f, "{l}: {}: {}", p.object, p.message),
            None => write!(f, "{}: {}", p.object, p.message),
        }?;
        if !p.message.starts_with(&p.path.to_string()) && !p.path.0.is_empty() {
            write!(f, " (at {})", p.path)?;
        }
        Ok(())
    }
}

impl std::error::Error for Report {}

impl Diagnostic for Report {
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.problem.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.problem.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let l = self.problem.location.as_ref()?;
        self.source.as_ref()?;
        let label = self.problem.path.to_string();
        Some(Box::new(std::iter::once(LabeledSpan::new(Some(label), l.offset, l.len.max(1)))))
    }
}

/// Lines longer than this get no code frame.
const MAX_FRAME_LINE: usize = 400;

/// Renders problems as text; code frames when the source text is known.
pub struct Renderer {
    sources: HashMap<Arc<str>, Arc<str>>,
    handler: GraphicalReportHandler,
}

impl Renderer {
    pub fn new(sources: &[Source], color: bool) -> Self {
        let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
        // No wrapping: the first line stays one greppable `file:line:col: object: message`.
        let handler = GraphicalReportHandler::new_themed(theme).with_context_lines(1).with_wrap_lines(false);
        Renderer { sources: sources.iter().map(|s| (s.name.clone(), s.text.clone())).collect(), handler }
    }

    pub fn render(&self, p: &Problem) -> String {
        let source = p.location.as_ref().and_then(|l| {
            let text = self.sources.get(&l.file)?;
            // A code frame of a very long line (one-line JSON) helps nobody, and miette's
            // column arithmetic panics on it: print the position and path alone.
            let start = text[..l.offset.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
            let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
            (end - start <= MAX_FRAME_LINE).then(|| NamedSource::new(&l.file, text.clone()).with_language("yaml"))
        });
        let report = Report { problem: p.clone(), source };
        let mut out = String::new();
        if self.handler.render_report(&mut out, &report).is_err() {
            out = report.to_string();
        }
        out
    }
}
