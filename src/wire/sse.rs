//! An incremental Server-Sent Events parser for provider streams. Hand-written on the hot path because the
//! rewrite forwards each event's exact raw bytes and copies nothing for an event inside one chunk; the
//! SSE crates hand back decoded fields only (measured: a stream costs ≤ 1.7× bare Envoy, README).
//!
//! Bytes arrive in arbitrary chunks; [`SseParser::feed`] reports each event as soon as its terminating blank
//! line is in, and the events (their bytes, kinds and data) are the same whatever the chunk boundaries. Line
//! endings may be CRLF, LF or CR (mixed, too), as the [SSE specification] allows; comment lines (`:`…) and
//! `event:`, `id:`, `retry:` fields are recognised and skipped; several `data:` lines are joined with `\n`;
//! the space after `data:` is optional.
//!
//! Every byte fed comes back exactly once, in order, in some event's `raw` (from `feed` or `finish`), so a
//! caller that forwards the raw slices forwards the stream byte for byte. An event longer than the limit
//! given at construction is not buffered or parsed: its bytes are handed out as they arrive as
//! [`Kind::Oversized`] pieces, and parsing resumes after its blank line.
//!
//! Hot path: bytes of an event that arrives whole inside one `feed` are never copied (the event borrows
//! the input); only an event split across chunks is gathered in an internal buffer, and a multi-line data
//! payload is joined in a second one. Both buffers are reused, so a long stream allocates only while its
//! largest event grows them.
//!
//! One latency trade-off: when a blank line ends with a lone CR at the very end of the bytes received, the
//! event is held back until the next byte (or `finish`) says whether an LF follows (the CR then being half
//! of a CRLF, and the LF part of this event). Streams with LF or CRLF line endings, which is all of them in
//! practice, never wait.
//!
//! [SSE specification]: https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

/// What an [`Event`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// At least one `data` line; the payload is not `[DONE]`.
    Data,
    /// The data payload is exactly `[DONE]` (OpenAI's end-of-stream marker).
    Done,
    /// No `data` line: only comments (`: OPENROUTER PROCESSING`), other fields, or nothing (a stray blank
    /// line).
    CommentOrEmpty,
    /// Part or all of an event over the byte limit: passed through as `raw`, not parsed (`data` is `None`).
    Oversized,
}

/// One event (or, for [`Kind::Oversized`], one piece of an event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The exact bytes as received, including the terminating blank line when `complete`, so a caller
    /// that does not rewrite the event can pass it through byte for byte.
    pub raw: &'a [u8],
    /// The joined data payload (`data` lines joined with `\n`, without the final one); `None` when the
    /// event has no data line (and for oversized pieces).
    pub data: Option<&'a [u8]>,
    /// What the event holds.
    pub kind: Kind,
    /// `raw` ends with the event's terminating blank line. False for the leading pieces of an oversized
    /// event (its last piece is complete) and for the tail [`SseParser::finish`] hands out of a stream cut
    /// mid-event.
    pub complete: bool,
}

/// Where the scan stands at the end of the bytes seen so far (all of them part of the pending event).
#[derive(Debug, Clone, Copy)]
struct Scan {
    /// The current line has no byte yet (the previous byte ended a line, or the event just began).
    line_empty: bool,
    /// The previous byte was a CR ending a non-empty line: an LF now is the rest of that CRLF.
    after_cr: bool,
    /// The previous byte was a CR ending an empty line: the event is complete, and it includes the next
    /// byte only if that is an LF.
    blank_cr: bool,
}

impl Scan {
    const START: Scan = Scan { line_empty: true, after_cr: false, blank_cr: false };

    /// Scans `bytes`, which follow the bytes already scanned. Returns where in `bytes` the pending event
    /// ends (exclusive), the state then reset for the next event; `None` if it does not end in `bytes`.
    fn run(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if self.blank_cr {
                *self = Scan::START;
                return Some(if b == b'\n' { i + 1 } else { i });
            }
            match b {
                b'\n' => {
                    if self.after_cr {
                        self.after_cr = false;
                    } else if self.line_empty {
                        *self = Scan::START;
                        return Some(i + 1);
                    } else {
                        self.line_empty = true;
                    }
                }
                b'\r' => {
                    if self.line_empty {
                        self.blank_cr = true;
                    } else {
                        self.line_empty = true;
                        self.after_cr = true;
                    }
                }
                _ => {
                    self.line_empty = false;
                    self.after_cr = false;
                    // Skip the rest of the line in one go.
                    match bytes.get(i..).and_then(|rest| rest.iter().position(|&c| c == b'\n' || c == b'\r'))
                    {
                        Some(p) => {
                            i += p;
                            continue;
                        }
                        None => return None,
                    }
                }
            }
            i += 1;
        }
        None
    }
}

/// The incremental parser; one per streamed response.
#[derive(Debug)]
pub struct SseParser {
    /// Longest event parsed; a longer one is passed through as [`Kind::Oversized`].
    max_event_bytes: usize,
    /// Bytes of the pending event not yet handed out.
    pending: Vec<u8>,
    /// Scratch for joining multi-line data.
    joined: Vec<u8>,
    /// Scan state at the end of `pending`.
    scan: Scan,
    /// The pending event is oversized: part of it was already handed out.
    oversized: bool,
}

impl SseParser {
    /// A parser that parses events of at most `max_event_bytes` bytes (terminating blank line included).
    pub fn new(max_event_bytes: usize) -> SseParser {
        SseParser {
            max_event_bytes,
            pending: Vec::new(),
            joined: Vec::new(),
            scan: Scan::START,
            oversized: false,
        }
    }

    /// Appends `input`, calls `on_event` for each event completed by it (in order), and for each piece of
    /// an oversized event.
    pub fn feed(&mut self, input: &[u8], on_event: &mut dyn FnMut(Event<'_>)) {
        let mut rest = input;
        while !rest.is_empty() {
            match self.scan.run(rest) {
                Some(end) => {
                    let (head, tail) = rest.split_at(end);
                    rest = tail;
                    let raw: &[u8] = if self.pending.is_empty() {
                        head
                    } else {
                        self.pending.extend_from_slice(head);
                        &self.pending
                    };
                    if !raw.is_empty() {
                        if self.oversized || raw.len() > self.max_event_bytes {
                            on_event(oversized(raw, true));
                        } else {
                            on_event(parse(raw, &mut self.joined, true));
                        }
                    }
                    self.pending.clear();
                    self.oversized = false;
                }
                None => {
                    // The whole of `rest` belongs to the pending event. Once that is over the limit, it goes
                    // out as oversized pieces as it arrives; a CR that may end the event stays pending, so
                    // the piece that ends an oversized event is never empty.
                    if self.oversized || self.pending.len() + rest.len() > self.max_event_bytes {
                        if !self.pending.is_empty() {
                            on_event(oversized(&self.pending, false));
                            self.pending.clear();
                        }
                        let (out, keep) = rest.split_at(rest.len() - usize::from(self.scan.blank_cr));
                        if !out.is_empty() {
                            on_event(oversized(out, false));
                        }
                        self.pending.extend_from_slice(keep);
                        self.oversized = true;
                    } else {
                        self.pending.extend_from_slice(rest);
                    }
                    rest = &[];
                }
            }
        }
    }

    /// Bytes received but not yet handed out in an event (a caller forwards only what events hand out and
    /// keeps these).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// At end of stream: the pending bytes, if any, as one last event, leaving the parser empty (ready for a
    /// new stream). The event is `complete` only if its blank line was in (a lone CR held back to see
    /// whether an LF followed); otherwise the stream was cut mid-event. Such a cut event is still parsed (an
    /// SSE client would discard it; the caller decides), unless it is oversized.
    pub fn finish(&mut self, on_event: &mut dyn FnMut(Event<'_>)) {
        let complete = self.scan.blank_cr;
        if !self.pending.is_empty() {
            if self.oversized || self.pending.len() > self.max_event_bytes {
                on_event(oversized(&self.pending, complete));
            } else {
                on_event(parse(&self.pending, &mut self.joined, complete));
            }
        }
        self.pending.clear();
        self.scan = Scan::START;
        self.oversized = false;
    }
}

/// An oversized piece.
fn oversized(raw: &[u8], complete: bool) -> Event<'_> {
    Event { raw, data: None, kind: Kind::Oversized, complete }
}

/// Parses one event's lines. `joined` is scratch for a payload of several data lines.
fn parse<'a>(raw: &'a [u8], joined: &'a mut Vec<u8>, complete: bool) -> Event<'a> {
    // The first data line's value, as a range of `raw`; a second one switches to `joined`.
    let mut first: Option<(usize, usize)> = None;
    let mut several = false;
    let mut pos = 0;
    while pos < raw.len() {
        let line_end = raw
            .get(pos..)
            .and_then(|r| r.iter().position(|&c| c == b'\n' || c == b'\r'))
            .map_or(raw.len(), |p| pos + p);
        let line_start = pos;
        pos = match raw.get(line_end..) {
            Some([b'\r', b'\n', ..]) => line_end + 2,
            Some([_, ..]) => line_end + 1,
            _ => line_end,
        };
        let line = raw.get(line_start..line_end).unwrap_or_default();
        if line.is_empty() || line.first() == Some(&b':') {
            continue;
        }
        let (name, value_start) = match line.iter().position(|&c| c == b':') {
            Some(colon) => {
                let after = line_start + colon + 1;
                let skip = usize::from(raw.get(after) == Some(&b' ') && after < line_end);
                (line.get(..colon).unwrap_or_default(), after + skip)
            }
            None => (line, line_end),
        };
        if name != b"data" {
            continue;
        }
        match first {
            None => first = Some((value_start, line_end)),
            Some((s, e)) => {
                if !several {
                    joined.clear();
                    joined.extend_from_slice(raw.get(s..e).unwrap_or_default());
                    several = true;
                }
                joined.push(b'\n');
                joined.extend_from_slice(raw.get(value_start..line_end).unwrap_or_default());
            }
        }
    }
    let data: Option<&'a [u8]> =
        if several { Some(joined.as_slice()) } else { first.map(|(s, e)| raw.get(s..e).unwrap_or_default()) };
    let kind = match data {
        None => Kind::CommentOrEmpty,
        Some(b"[DONE]") => Kind::Done,
        Some(_) => Kind::Data,
    };
    Event { raw, data, kind, complete }
}
