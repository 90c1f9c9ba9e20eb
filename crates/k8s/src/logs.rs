//! Turning a container's raw log stream into stored log lines.
//!
//! The kubelet serves `timestamps=true` logs as `<RFC 3339 nanos> <text>\n`. Pods print whatever
//! they like, so the decoder must never fail: invalid UTF-8 is replaced, over-long lines are
//! split into pieces that keep the line's timestamp, and a final line without a newline is still
//! delivered when the stream ends. Lines come out in order, which is what gives them their
//! sequence numbers.

use chrono::{DateTime, Utc};
use slipway_core::mask::Masker;
use std::sync::Arc;

/// One decoded line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedLine {
    /// The kubelet's timestamp, when the stream carried one.
    pub ts: Option<DateTime<Utc>>,
    pub text: String,
}

/// Incremental decoder: feed it chunks as they arrive, `finish` it at the end of the stream.
#[derive(Debug)]
pub struct LogDecoder {
    buf: Vec<u8>,
    max_line_bytes: usize,
    timestamps: bool,
    /// The timestamp of the line currently being split into pieces.
    current_ts: Option<DateTime<Utc>>,
    /// Whether `buf` starts in the middle of a line (after an over-long piece was cut off).
    mid_line: bool,
    /// Secret values replaced by `***` in every line and piece.
    masker: Option<Arc<Masker>>,
}

impl LogDecoder {
    /// `timestamps`: whether each line starts with a kubelet timestamp. `max_line_bytes` is at
    /// least 16 so that a piece always holds a whole UTF-8 character.
    pub fn new(timestamps: bool, max_line_bytes: usize) -> Self {
        LogDecoder {
            buf: Vec::new(),
            max_line_bytes: max_line_bytes.max(16),
            timestamps,
            current_ts: None,
            mid_line: false,
            masker: None,
        }
    }

    /// Mask these values in every line. A line is masked whole, before it is cut into pieces;
    /// an over-long line still arriving is cut before any value (or a value's beginning) that
    /// would straddle the cut, so a value is never split across two stored pieces (unless it
    /// is longer than a piece).
    #[must_use]
    pub fn with_masker(mut self, masker: Arc<Masker>) -> Self {
        self.masker = (!masker.is_empty()).then_some(masker);
        self
    }

    /// Decode every complete line (and every over-long piece) in `chunk` and what came before.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<DecodedLine> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                self.emit_line(&line[..nl], &mut out);
                continue;
            }
            // No newline yet: cut an over-long line into pieces.
            let limit = self.max_line_bytes + self.prefix_allowance();
            if self.buf.len() <= limit {
                break;
            }
            let mut cut = utf8_cut(&self.buf, limit);
            if let Some(m) = &self.masker {
                if let std::borrow::Cow::Owned(masked) = m.mask(&self.buf) {
                    self.buf = masked;
                    continue;
                }
                cut = m.safe_cut(&self.buf, cut);
            }
            let piece: Vec<u8> = self.buf.drain(..cut).collect();
            self.emit_piece(&piece, &mut out);
        }
        out
    }

    /// Deliver what is left (a last line without a newline).
    pub fn finish(mut self) -> Vec<DecodedLine> {
        let mut out = Vec::new();
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.emit_line(&rest, &mut out);
        }
        out
    }

    /// Room for the timestamp prefix in front of the first piece of a line.
    fn prefix_allowance(&self) -> usize {
        if self.timestamps && !self.mid_line {
            40
        } else {
            0
        }
    }

    fn emit_piece(&mut self, piece: &[u8], out: &mut Vec<DecodedLine>) {
        let body = self.strip_timestamp(piece);
        self.mid_line = true;
        self.push_text(body, out);
    }

    fn emit_line(&mut self, line: &[u8], out: &mut Vec<DecodedLine>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let body = self.strip_timestamp(line);
        self.mid_line = false;
        self.push_text(body, out);
    }

    /// At the start of a line, take the timestamp off; in the middle of one, keep the last.
    fn strip_timestamp<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        if !self.timestamps || self.mid_line {
            return bytes;
        }
        let (ts, rest) = split_timestamp(bytes);
        self.current_ts = ts;
        rest
    }

    fn push_text(&self, body: &[u8], out: &mut Vec<DecodedLine>) {
        let body = match &self.masker {
            Some(m) => m.mask(body),
            None => std::borrow::Cow::Borrowed(body),
        };
        let text = String::from_utf8_lossy(&body);
        // A complete line may still exceed the limit (it arrived in one chunk): split it.
        let mut rest: &str = &text;
        loop {
            if rest.len() <= self.max_line_bytes {
                out.push(DecodedLine {
                    ts: self.current_ts,
                    text: rest.to_owned(),
                });
                break;
            }
            let mut cut = self.max_line_bytes;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push(DecodedLine {
                ts: self.current_ts,
                text: rest[..cut].to_owned(),
            });
            rest = &rest[cut..];
        }
    }
}

/// A cut position at or below `limit` that does not split a UTF-8 character (when the bytes are
/// valid UTF-8 there; invalid bytes are replaced later anyway).
fn utf8_cut(buf: &[u8], limit: usize) -> usize {
    match std::str::from_utf8(&buf[..limit]) {
        Ok(_) => limit,
        Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => e.valid_up_to(),
        Err(_) => limit,
    }
}

/// Split `<RFC 3339 timestamp> <text>` into its parts; no timestamp if the prefix is not one.
fn split_timestamp(line: &[u8]) -> (Option<DateTime<Utc>>, &[u8]) {
    let Some(space) = line.iter().take(40).position(|&b| b == b' ') else {
        return parse_ts(line).map_or((None, line), |ts| (Some(ts), &line[line.len()..]));
    };
    match parse_ts(&line[..space]) {
        Some(ts) => (Some(ts), &line[space + 1..]),
        None => (None, line),
    }
}

fn parse_ts(bytes: &[u8]) -> Option<DateTime<Utc>> {
    let s = std::str::from_utf8(bytes).ok()?;
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[DecodedLine]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn lines_split_across_chunks_keep_order_and_timestamps() {
        let mut d = LogDecoder::new(true, 1024);
        let mut out =
            d.feed(b"2026-11-24T08:00:00.123456789Z #1 [internal] load build\n2026-11-24T08:00:01");
        out.extend(d.feed(b".5Z #2 DONE 0.1s\nno timestamp here\n"));
        out.extend(d.feed(b"2026-11-24T08:00:02Z last line, no newline"));
        out.extend(d.finish());
        assert_eq!(
            texts(&out),
            [
                "#1 [internal] load build",
                "#2 DONE 0.1s",
                "no timestamp here",
                "last line, no newline"
            ]
        );
        assert_eq!(
            out[0].ts.unwrap().to_rfc3339(),
            "2026-11-24T08:00:00.123456789+00:00"
        );
        assert_eq!(out[1].ts.unwrap().timestamp_millis() % 1000, 500);
        assert_eq!(out[2].ts, None);
        assert!(out[3].ts.is_some());
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let mut d = LogDecoder::new(false, 1024);
        let mut out = d.feed(b"ok \xff\xfe bytes\r\n");
        out.extend(d.finish());
        assert_eq!(texts(&out), ["ok \u{fffd}\u{fffd} bytes"]);
    }

    #[test]
    fn over_long_lines_are_split_at_char_boundaries_with_the_same_timestamp() {
        let mut d = LogDecoder::new(true, 16);
        let long = format!("2026-11-24T08:00:00Z {}\n", "é".repeat(20)); // 40 bytes of text
        let mut out = Vec::new();
        // Feed byte by byte: the hardest case for a streaming cut.
        for b in long.as_bytes() {
            out.extend(d.feed(std::slice::from_ref(b)));
        }
        out.extend(d.feed(b"next\n"));
        out.extend(d.finish());
        let pieces: Vec<_> = out[..out.len() - 1].iter().collect();
        assert!(pieces.len() >= 3, "{out:?}");
        assert_eq!(
            pieces.iter().map(|l| l.text.as_str()).collect::<String>(),
            "é".repeat(20)
        );
        assert!(
            pieces
                .iter()
                .all(|l| l.text.len() <= 16 && !l.text.contains('\u{fffd}'))
        );
        assert!(
            pieces
                .iter()
                .all(|l| l.ts == pieces[0].ts && l.ts.is_some())
        );
        assert_eq!(out.last().unwrap().text, "next");
    }

    /// A secret is masked however the stream's chunks and the line's pieces fall: fed byte by
    /// byte, in an over-long line whose cut would fall inside it, twice on one line.
    #[test]
    fn secrets_are_masked_in_lines_and_never_split_across_pieces() {
        const TOKEN: &str = "ghs_0123456789abcdefABCDEF";
        let mut m = Masker::none();
        m.add_git_token(TOKEN.as_bytes());
        let m = Arc::new(m);
        for offset in 0..40 {
            let mut d = LogDecoder::new(true, 32).with_masker(m.clone());
            let text = format!("{}{TOKEN} then {TOKEN} end", "x".repeat(offset));
            let line = format!("2026-11-24T08:00:00Z {text}\nnext\n");
            let mut out = Vec::new();
            for b in line.as_bytes() {
                out.extend(d.feed(std::slice::from_ref(b)));
            }
            out.extend(d.finish());
            let joined: String = out[..out.len() - 1]
                .iter()
                .map(|l| l.text.as_str())
                .collect();
            assert_eq!(
                joined,
                format!("{}*** then *** end", "x".repeat(offset)),
                "offset {offset}: {out:?}"
            );
            assert!(
                out.iter()
                    .all(|l| !l.text.contains("ghs_") && !l.text.contains("ABCDEF"))
            );
            assert_eq!(out.last().unwrap().text, "next");
        }
        // Without a masker nothing changes.
        let mut d = LogDecoder::new(false, 1024);
        assert_eq!(texts(&d.feed(format!("{TOKEN}\n").as_bytes())), [TOKEN]);
    }

    #[test]
    fn a_long_line_in_one_chunk_is_split_too() {
        let mut d = LogDecoder::new(false, 16);
        let out = d.feed(format!("{}\n", "x".repeat(40)).as_bytes());
        assert_eq!(texts(&out), ["x".repeat(16), "x".repeat(16), "x".repeat(8)]);
    }

    #[test]
    fn empty_lines_are_kept() {
        let mut d = LogDecoder::new(true, 64);
        let out = d.feed(b"2026-11-24T08:00:00Z \n2026-11-24T08:00:00Z\n\n");
        assert_eq!(texts(&out), ["", "", ""]);
    }
}
