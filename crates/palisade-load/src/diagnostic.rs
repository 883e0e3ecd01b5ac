//! Rendering problems for people: miette reports with a code frame at file:line:column.
//!
//! miette finds a span's line by scanning its source from the start, so each frame handed the
//! whole file costs the file's length up to the error: many errors in a big file rendered in
//! quadratic time. Each source's line starts are indexed once, and miette gets only the few
//! lines around each span ([`Window`]), so rendering is linear in the input and the output.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents, SourceCode,
    SourceSpan, SpanContents,
};
use palisade_core::field::{Problem, Severity};

use crate::source::Source;

struct Report {
    problem: Problem,
    source: Option<Window>,
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
/// Lines of the source around a span that a frame may show (the handler shows one).
const WINDOW_LINES: usize = 2;

/// A source's text and where its lines start (counted as miette counts them: LF, CRLF, CR).
struct Indexed {
    text: Arc<str>,
    line_starts: OnceLock<Vec<usize>>,
}

impl Indexed {
    fn line_starts(&self) -> &[usize] {
        self.line_starts.get_or_init(|| {
            let b = self.text.as_bytes();
            let mut starts = vec![0];
            for (i, &c) in b.iter().enumerate() {
                if c == b'\n' || (c == b'\r' && b.get(i + 1) != Some(&b'\n')) {
                    starts.push(i + 1);
                }
            }
            starts
        })
    }

    /// The 0-based line holding byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        self.line_starts().partition_point(|&s| s <= offset).saturating_sub(1)
    }

    /// Byte range of line `i`, without its line break.
    fn line(&self, i: usize) -> (usize, usize) {
        let starts = self.line_starts();
        let end = starts.get(i + 1).copied().unwrap_or(self.text.len());
        let text = &self.text.as_bytes()[starts[i]..end];
        let trimmed = text.len() - text.iter().rev().take_while(|c| matches!(c, b'\n' | b'\r')).count();
        (starts[i], starts[i] + trimmed)
    }
}

/// The lines of a source around one span: all miette reads for a frame.
struct Window {
    name: String,
    text: Arc<str>,
    /// Byte range of the window and the 0-based number of its first line.
    start: usize,
    end: usize,
    first_line: usize,
}

impl Window {
    /// The window for `offset..offset + len` in `src`, or `None` when the span's line is too
    /// long to show (one-line JSON: a frame helps nobody, and miette's column arithmetic
    /// panics on it).
    fn around(name: &str, src: &Indexed, offset: usize, len: usize) -> Option<Window> {
        let offset = offset.min(src.text.len());
        let line = src.line_of(offset);
        let (start, end) = src.line(line);
        if end - start > MAX_FRAME_LINE {
            return None;
        }
        let last_line = src.line_starts().len() - 1;
        let first = line.saturating_sub(WINDOW_LINES);
        let last = (src.line_of(offset + len.saturating_sub(1)) + WINDOW_LINES).min(last_line);
        let end = src.line_starts().get(last + 1).copied().unwrap_or(src.text.len());
        Some(Window {
            name: name.to_string(),
            text: src.text.clone(),
            start: src.line_starts()[first],
            end,
            first_line: first,
        })
    }
}

impl SourceCode for Window {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let offset = span.offset().checked_sub(self.start).ok_or(MietteError::OutOfBounds)?;
        let local = SourceSpan::new(offset.into(), span.len());
        let text = &self.text[self.start..self.end];
        let inner = text.read_span(&local, context_lines_before, context_lines_after)?;
        let at = SourceSpan::new((inner.span().offset() + self.start).into(), inner.span().len());
        let contents = MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            at,
            inner.line() + self.first_line,
            inner.column(),
            inner.line_count(),
        );
        Ok(Box::new(contents.with_language("yaml")))
    }
}

/// Renders problems as text; code frames when the source text is known.
pub struct Renderer {
    sources: HashMap<Arc<str>, Indexed>,
    handler: GraphicalReportHandler,
}

impl Renderer {
    pub fn new(sources: &[Source], color: bool) -> Self {
        let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
        // No wrapping: the first line stays one greppable `file:line:col: object: message`.
        let handler = GraphicalReportHandler::new_themed(theme).with_context_lines(1).with_wrap_lines(false);
        let sources = sources
            .iter()
            .map(|s| (s.name.clone(), Indexed { text: s.text.clone(), line_starts: OnceLock::new() }))
            .collect();
        Renderer { sources, handler }
    }

    pub fn render(&self, p: &Problem) -> String {
        let source = p.location.as_ref().and_then(|l| {
            let src = self.sources.get(&l.file)?;
            Window::around(&l.file, src, l.offset, l.len.max(1))
        });
        let report = Report { problem: p.clone(), source };
        let mut out = String::new();
        if self.handler.render_report(&mut out, &report).is_err() {
            out = report.to_string();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miette::NamedSource;
    use palisade_core::field::{FieldPath, Location};

    fn problem(file: &str, offset: usize, len: usize) -> Problem {
        Problem {
            severity: Severity::Error,
            object: "Pod x/a".into(),
            path: FieldPath::root().key("metadata").key("name"),
            message: "bad".into(),
            help: Some("fix it".into()),
            location: Some(Location { file: file.into(), line: 0, column: 0, offset, len }),
        }
    }

    /// The frame as miette draws it from the whole source (the old, quadratic way).
    fn whole(text: &str, p: &Problem) -> String {
        let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .with_context_lines(1)
            .with_wrap_lines(false);
        struct Whole(Problem, NamedSource<Arc<str>>);
        impl fmt::Debug for Whole {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("whole")
            }
        }
        impl fmt::Display for Whole {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                Report { problem: self.0.clone(), source: None }.fmt(f)
            }
        }
        impl std::error::Error for Whole {}
        impl Diagnostic for Whole {
            fn severity(&self) -> Option<miette::Severity> {
                Some(miette::Severity::Error)
            }
            fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
                self.0.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
            }
            fn source_code(&self) -> Option<&dyn SourceCode> {
                Some(&self.1)
            }
            fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
                let l = self.0.location.as_ref()?;
                Some(Box::new(std::iter::once(LabeledSpan::new(Some(self.0.path.to_string()), l.offset, l.len.max(1)))))
            }
        }
        let source = NamedSource::new("f.yaml", Arc::<str>::from(text)).with_language("yaml");
        let mut out = String::new();
        handler.render_report(&mut out, &Whole(p.clone(), source)).unwrap();
        out
    }

    #[test]
    fn frames_from_the_window_are_the_frames_of_the_whole_source() {
        let lf: String = (0..40).map(|i| format!("key{i}: value{i}\n")).collect();
        let crlf = lf.replace('\n', "\r\n");
        let unended = lf.trim_end().to_string();
        let cr = "a: 1\rb: 2\rc: 3\rd: 4\r";
        for text in [lf.as_str(), crlf.as_str(), unended.as_str(), cr] {
            let r = Renderer::new(&[Source { name: "f.yaml".into(), text: text.into() }], false);
            let starts: Vec<usize> =
                (0..text.len()).filter(|&i| text[i..].starts_with(['k', 'a', 'b', 'c', 'd'])).collect();
            let last = text.len() - 1;
            let spans = starts.iter().map(|&s| (s, 3)).chain([(0, 1), (last, 1), (5, 40), (starts[2] + 6, 1)]);
            for (offset, len) in spans {
                let p = problem("f.yaml", offset, len);
                assert_eq!(r.render(&p), whole(text, &p), "{text:?} at {offset}+{len}");
            }
        }
    }

    #[test]
    fn a_frame_reads_a_few_lines_whatever_the_file_size() {
        for lines in [10usize, 100_000] {
            let text: String = (0..lines).map(|i| format!("key{i}: value{i}\n")).collect();
            let src = Indexed { text: text.as_str().into(), line_starts: OnceLock::new() };
            let near_end = text.len() - 3;
            let w = Window::around("f.yaml", &src, near_end, 5).unwrap();
            let shown = text[w.start..w.end].lines().count();
            assert!(shown <= 2 * WINDOW_LINES + 1, "{lines} lines: the window holds {shown}");
            assert_eq!(w.first_line, lines - 1 - WINDOW_LINES);
        }
    }
}
