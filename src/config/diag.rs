//! Configuration diagnostics, rendered like a compiler's: file, line, column,
//! the key path, the source line and what was expected.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use codespan_reporting::diagnostic::{Diagnostic as Report, Label};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term;

/// The text of every node file read in one load, so diagnostics can quote it.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    files: Vec<(PathBuf, String)>,
}

impl Sources {
    pub(crate) fn add(&mut self, path: PathBuf, text: String) -> usize {
        self.files.push((path, text));
        self.files.len() - 1
    }

    pub fn path(&self, file: usize) -> &Path {
        &self.files[file].0
    }

    pub fn text(&self, file: usize) -> &str {
        &self.files[file].1
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_col(&self, file: usize, offset: usize) -> (usize, usize) {
        let text = self.text(file);
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Where a diagnostic points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub(crate) file_index: usize,
    pub(crate) span: Range<usize>,
}

/// One problem found in the node files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Dotted key path, e.g. `masters.ens192.mode`; empty for the whole file.
    pub key: String,
    pub message: String,
    /// None only when there is no file to point at (an empty config dir).
    pub location: Option<Location>,
    /// Other places involved (the first definition of a duplicate name).
    pub related: Vec<(Location, String)>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            key: key.into(),
            message: message.into(),
            location: None,
            related: Vec::new(),
            help: None,
        }
    }

    pub(crate) fn at(mut self, sources: &Sources, file: usize, span: Range<usize>) -> Self {
        self.location = Some(locate(sources, file, span));
        self
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

pub(crate) fn locate(sources: &Sources, file: usize, span: Range<usize>) -> Location {
    let (line, column) = sources.line_col(file, span.start);
    Location {
        file: sources.path(file).to_path_buf(),
        line,
        column,
        file_index: file,
        span,
    }
}

impl fmt::Display for Diagnostic {
    /// One line: `file:line:col: key: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.location {
            write!(f, "{}:{}:{}: ", l.file.display(), l.line, l.column)?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one load, with the sources to quote.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
    pub sources: Sources,
}

impl Diagnostics {
    /// Renders every diagnostic with the offending source line.
    pub fn render(&self) -> String {
        let mut files = SimpleFiles::new();
        for i in 0..self.sources.len() {
            files.add(
                self.sources.path(i).display().to_string(),
                self.sources.text(i),
            );
        }
        let config = term::Config::default();
        let mut out = String::new();
        for d in &self.items {
            let title = if d.key.is_empty() {
                d.message.clone()
            } else {
                format!("{}: {}", d.key, d.message)
            };
            let mut report = Report::error().with_message(title);
            let mut labels = Vec::new();
            if let Some(l) = &d.location {
                labels.push(Label::primary(l.file_index, l.span.clone()));
            }
            for (l, msg) in &d.related {
                labels.push(Label::secondary(l.file_index, l.span.clone()).with_message(msg));
            }
            report = report.with_labels(labels);
            if let Some(h) = &d.help {
                report = report.with_notes(vec![format!("help: {h}")]);
            }
            match term::emit_into_string(&config, &files, &report) {
                Ok(s) if d.location.is_some() => out.push_str(&s),
                // No file to quote: fall back to the one-line form.
                _ => out.push_str(&format!("error: {d}\n")),
            }
            out.push('\n');
        }
        let n = self.items.len();
        out.push_str(&format!(
            "{n} error{} in the node files; nothing was changed\n",
            if n == 1 { "" } else { "s" }
        ));
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Where a merged value came from.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub file: usize,
    /// The key's span (the whole value's for the document root).
    pub key: Range<usize>,
    /// Dotted key path for messages: `masters.ens192.shim.addresses[0]`.
    pub dotted: String,
}

/// JSON pointer → origin of every merged value.
pub(crate) type Origins = HashMap<String, Origin>;

/// Appends a key to a dotted path, quoting it when TOML would need quotes.
pub(crate) fn join_key(dotted: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if dotted.is_empty() {
        key
    } else {
        format!("{dotted}.{key}")
    }
}
