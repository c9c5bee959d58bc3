//! Writing man(7) roff that `groff -ww` renders without a warning, from
//! text written for people (doc comments, with `code` in backticks and
//! fenced examples).
//!
//! What needs escaping: a backslash (roff's escape character), a `.` or `'`
//! starting a line (a request), and characters groff reads differently
//! from what a reader copies: `-` is a hyphen (`\-` is the ASCII minus that
//! options and names need), `'`, `` ` ``, `^` and `~` are typographic in
//! UTF-8 output. Anything outside ASCII becomes `\[uXXXX]`, so the pages
//! are ASCII and need no preconv.

/// Text for a roff text line; `-` stays a hyphen (prose).
pub fn esc(s: &str) -> String {
    escape(s, false)
}

/// Text that is code or a name: every `-` is the ASCII minus.
pub fn code(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, code: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' if code => out.push_str("\\-"),
            '\'' => out.push_str("\\(aq"),
            '`' => out.push_str("\\(ga"),
            '^' => out.push_str("\\(ha"),
            '~' => out.push_str("\\(ti"),
            c if c.is_ascii() => out.push(c),
            c => out.push_str(&format!("\\[u{:04X}]", c as u32)),
        }
    }
    out
}

/// Bold code.
pub fn b(s: &str) -> String {
    format!("\\fB{}\\fR", code(s))
}

/// Italic code (a placeholder, a type).
pub fn i(s: &str) -> String {
    format!("\\fI{}\\fR", code(s))
}

/// A line of text made safe to start a roff line.
pub fn line(s: &str) -> String {
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s.to_string()
    }
}

/// One paragraph of prose with `code` spans (bold): soft line breaks
/// become spaces.
pub fn inline(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::new();
    for (n, part) in s.split('`').enumerate() {
        if n % 2 == 1 {
            out.push_str(&b(part));
        } else {
            out.push_str(&esc(part));
        }
    }
    assert!(
        s.matches('`').count() % 2 == 0,
        "unbalanced backticks in {s:?}"
    );
    line(&out)
}

/// A literal example block, indented.
pub fn example(text: &str) -> String {
    let mut out = String::from(".sp\n.RS 4\n.EX\n");
    for l in text.trim_end().lines() {
        out.push_str(&line(&code(l)));
        out.push('\n');
    }
    out.push_str(".EE\n.RE\n");
    out
}

/// A doc comment (paragraphs split by blank lines, ```` ``` ```` fences
/// as examples) as roff paragraphs, each begun by `.PP` but the first.
pub fn paragraphs(doc: &str) -> String {
    let mut out = String::new();
    let mut first = true;
    let mut rest = doc.trim();
    while !rest.is_empty() {
        if let Some(fenced) = rest.strip_prefix("```") {
            let body = fenced.split_once('\n').map_or("", |(_, b)| b);
            let (block, after) = body.split_once("```").unwrap_or((body, ""));
            out.push_str(&example(block));
            rest = after.trim_start();
            first = false;
            continue;
        }
        let end = [rest.find("\n\n"), rest.find("\n```")]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(rest.len());
        let (para, after) = rest.split_at(end);
        // A line starting with `- ` starts a list item; the lines before
        // the first item are the paragraph's text.
        let mut parts = vec![String::new()];
        for l in para.lines() {
            match l.trim_start().strip_prefix("- ") {
                Some(item) => parts.push(item.to_string()),
                None => {
                    let last = parts.last_mut().expect("parts is never empty");
                    last.push('\n');
                    last.push_str(l);
                }
            }
        }
        if !parts[0].trim().is_empty() {
            if !first {
                out.push_str(".PP\n");
            }
            out.push_str(&inline(&parts[0]));
            out.push('\n');
        }
        for item in &parts[1..] {
            out.push_str(".IP \\(bu 2\n");
            out.push_str(&inline(item));
            out.push('\n');
        }
        rest = after.trim_start();
        first = false;
    }
    out
}

/// A section heading, quoted for roff.
pub fn sh(title: &str) -> String {
    format!(".SH \"{}\"\n", code(title))
}

/// A subsection heading, quoted for roff.
pub fn ss(title: &str) -> String {
    format!(".SS \"{}\"\n", code(title))
}

/// The title line: `name(section)`, no date (it would make every build's
/// page differ), the package and version as the footer; then no
/// hyphenation and no justification, so names and paths stay whole and
/// copyable.
pub fn th(name: &str, section: &str, manual: &str) -> String {
    format!(
        ".TH {} {section} \"\" \"podnet {}\" \"{manual}\"\n.nh\n.nr HY 0\n.ad l\n",
        code(name),
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_roff_reads_otherwise() {
        assert_eq!(code("a-b\\c"), "a\\-b\\ec");
        assert_eq!(esc("pod → net"), "pod \\[u2192] net");
        assert_eq!(line(".x"), "\\&.x");
        assert_eq!(
            inline("use `--dry-run`\nnow"),
            "use \\fB\\-\\-dry\\-run\\fR now"
        );
        assert_eq!(
            paragraphs("One.\n\n```toml\n[a]\nk = 1\n```"),
            "One.\n.sp\n.RS 4\n.EX\n[a]\nk = 1\n.EE\n.RE\n"
        );
        assert_eq!(
            paragraphs("Two:\n  - a\n    b;\n  - c.\n\nThree."),
            "Two:\n.IP \\(bu 2\na b;\n.IP \\(bu 2\nc.\n.PP\nThree.\n"
        );
    }
}
