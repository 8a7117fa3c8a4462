use super::*;
use crate::wire::json::top_level;
use crate::wire::sse::{Event, Kind, SseParser};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// The usage of a whole JSON text (test helper: the product splits the top level once and reads it there).
fn usage_of(json: &[u8]) -> Option<Usage> {
    usage_in(&top_level(std::str::from_utf8(json).ok()?).ok()?.1)
}

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

/// An event, owned, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    raw: Vec<u8>,
    data: Option<Vec<u8>>,
    kind: Kind,
    complete: bool,
}

impl Owned {
    fn of(e: &Event<'_>) -> Owned {
        Owned { raw: e.raw.to_vec(), data: e.data.map(<[u8]>::to_vec), kind: e.kind, complete: e.complete }
    }
}

/// What a run of the parser produced.
#[derive(Debug)]
struct Run {
    /// Events in order, oversized pieces merged into one event (their split depends on the chunking).
    events: Vec<Owned>,
    /// The last usage seen in a data payload.
    usage: Option<Usage>,
    /// Every raw slice handed out, concatenated.
    raw: Vec<u8>,
}

/// Feeds `chunks` in order, then finishes.
fn run(chunks: &[&[u8]], max: usize) -> Run {
    let mut parser = SseParser::new(max);
    let mut pieces: Vec<Owned> = Vec::new();
    let mut usage = None;
    let mut on_event = |e: Event<'_>| {
        if let Some(u) = e.data.and_then(usage_of) {
            usage = Some(u);
        }
        assert!(!e.raw.is_empty(), "an event with no bytes");
        pieces.push(Owned::of(&e));
    };
    for chunk in chunks {
        parser.feed(chunk, &mut on_event);
    }
    parser.finish(&mut on_event);
    assert_eq!(parser.pending_len(), 0, "finish leaves the parser empty");
    let raw = pieces.iter().flat_map(|p| p.raw.iter().copied()).collect();
    Run { events: merge_oversized(pieces), usage, raw }
}

/// Merges consecutive pieces of one oversized event (up to the complete one).
fn merge_oversized(pieces: Vec<Owned>) -> Vec<Owned> {
    let mut out: Vec<Owned> = Vec::new();
    let mut open = false;
    for p in pieces {
        match out.last_mut() {
            Some(last) if open && p.kind == Kind::Oversized => {
                last.raw.extend_from_slice(&p.raw);
                last.complete = p.complete;
            }
            _ => {
                assert!(!open, "an oversized event must end with an oversized piece: {p:?}");
                out.push(p);
            }
        }
        open = out.last().is_some_and(|l| l.kind == Kind::Oversized && !l.complete);
    }
    out
}

/// Splits `input` at `cuts` (sorted positions).
fn split_at<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut from = 0;
    for &c in cuts {
        out.push(&input[from..c]);
        from = c;
    }
    out.push(&input[from..]);
    out
}

/// A small deterministic pseudo-random generator (64-bit LCG, high bits).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A straightforward, non-incremental reading of a whole stream, independent of the parser's code: the
/// reference the incremental parser must agree with.
fn reference(input: &[u8], max: usize) -> Vec<Owned> {
    // Lines with their terminators: (start, end of content, end of terminator).
    let mut lines = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        let mut end = pos;
        while end < input.len() && input[end] != b'\n' && input[end] != b'\r' {
            end += 1;
        }
        let next = if end == input.len() {
            end
        } else if input[end] == b'\r' && input.get(end + 1) == Some(&b'\n') {
            end + 2
        } else {
            end + 1
        };
        lines.push((pos, end, next));
        pos = next;
    }
    let mut events = Vec::new();
    let mut start = 0;
    for &(s, e, next) in &lines {
        if s == e && next > e {
            events.push((start, next, true));
            start = next;
        }
    }
    if start < input.len() {
        events.push((start, input.len(), false));
    }
    events
        .into_iter()
        .map(|(s, e, complete)| {
            let raw = &input[s..e];
            if raw.len() > max {
                return Owned { raw: raw.to_vec(), data: None, kind: Kind::Oversized, complete };
            }
            let mut data: Vec<Vec<u8>> = Vec::new();
            for &(ls, le, _) in lines.iter().filter(|l| l.0 >= s && l.0 < e) {
                let line = &input[ls..le];
                if line.is_empty() || line[0] == b':' {
                    continue;
                }
                let (name, mut value) = match line.iter().position(|&c| c == b':') {
                    Some(c) => (&line[..c], &line[c + 1..]),
                    None => (line, &line[line.len()..]),
                };
                if value.first() == Some(&b' ') {
                    value = &value[1..];
                }
                if name == b"data" {
                    data.push(value.to_vec());
                }
            }
            let data = (!data.is_empty()).then(|| data.join(&b'\n'));
            let kind = match data.as_deref() {
                None => Kind::CommentOrEmpty,
                Some(b"[DONE]") => Kind::Done,
                Some(_) => Kind::Data,
            };
            Owned { raw: raw.to_vec(), data, kind, complete }
        })
        .collect()
}

/// Asserts that every chunking of `input` in `chunkings` gives `expected`, the same usage, and all bytes.
fn assert_chunkings(name: &str, input: &[u8], max: usize, chunkings: impl Iterator<Item = Vec<usize>>) {
    let whole = run(&[input], max);
    assert_eq!(whole.raw, input, "{name}: raw bytes in one chunk");
    let expected = reference(input, max);
    assert_eq!(whole.events, expected, "{name}: one chunk vs the reference");
    for cuts in chunkings {
        let r = run(&split_at(input, &cuts), max);
        assert_eq!(r.raw, input, "{name}: raw bytes, cut at {cuts:?}");
        assert_eq!(r.events, expected, "{name}: events, cut at {cuts:?}");
        assert_eq!(r.usage, whole.usage, "{name}: usage, cut at {cuts:?}");
    }
}

/// Every split in 2 pieces, splits in 3 (the first cut anywhere, the second one byte later or at a
/// pseudo-random position after it),
/// 1-byte chunks, and pseudo-random multi-way splits with small chunks.
fn chunkings(len: usize, seed: u64) -> impl Iterator<Item = Vec<usize>> {
    let mut rng = Lcg(seed);
    let mut all: Vec<Vec<usize>> = (0..=len).map(|i| vec![i]).collect();
    for i in 0..=len {
        all.push(vec![i, (i + 1).min(len)]);
        all.push(vec![i, i + rng.below(len - i + 1)]);
    }
    all.push((1..len).collect());
    for _ in 0..200 {
        let max_chunk = 1 + rng.below(24);
        let mut cuts = Vec::new();
        let mut at = 0;
        loop {
            at += 1 + rng.below(max_chunk);
            if at >= len {
                break;
            }
            cuts.push(at);
        }
        all.push(cuts);
    }
    all.into_iter()
}

// ---------------------------------------------------------------------------------------------------------
// Fixtures: stream shapes as providers document them
// ---------------------------------------------------------------------------------------------------------

struct Fixture {
    name: &'static str,
    text: &'static str,
    /// The usage the stream reports, if any.
    usage: Option<Usage>,
    /// Data events (not counting `[DONE]`).
    data_events: usize,
    /// Events with no data (keep-alive comments and the like).
    comment_events: usize,
    /// Concatenated `choices[0].delta.content`.
    content: &'static str,
}

fn usage(prompt: u64, completion: u64, cached: u64, cache_write: u64, reasoning: u64) -> Usage {
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_tokens: cached,
        cache_write_tokens: cache_write,
        reasoning_tokens: reasoning,
    }
}

fn fixtures() -> Vec<Fixture> {
    vec![
        Fixture {
            name: "openai_include_usage",
            text: include_str!("../../../tests/fixtures/sse/openai_include_usage.sse"),
            usage: Some(usage(19, 8, 0, 0, 0)),
            data_events: 6,
            comment_events: 0,
            content: "Hello! How can I help?",
        },
        Fixture {
            name: "openai_no_usage",
            text: include_str!("../../../tests/fixtures/sse/openai_no_usage.sse"),
            usage: None,
            data_events: 5,
            comment_events: 0,
            content: "Hello! How can I help?",
        },
        Fixture {
            name: "openrouter_comments",
            text: include_str!("../../../tests/fixtures/sse/openrouter_comments.sse"),
            usage: Some(usage(12, 3, 0, 0, 0)),
            data_events: 4,
            comment_events: 3,
            content: "Hi there.",
        },
        Fixture {
            name: "crlf",
            text: include_str!("../../../tests/fixtures/sse/crlf.sse"),
            usage: Some(usage(14, 5, 0, 0, 0)),
            data_events: 4,
            comment_events: 0,
            content: "Line endings are CRLF.",
        },
        Fixture {
            name: "multiline",
            text: include_str!("../../../tests/fixtures/sse/multiline.sse"),
            usage: Some(usage(7, 3, 0, 0, 0)),
            data_events: 2,
            comment_events: 0,
            content: "Bonjour !",
        },
        Fixture {
            name: "cached_reasoning",
            text: include_str!("../../../tests/fixtures/sse/cached_reasoning.sse"),
            usage: Some(usage(2048, 96, 1536, 256, 64)),
            data_events: 5,
            comment_events: 0,
            content: "4",
        },
    ]
}

/// The fixture's text with every line ending turned into `ending`.
fn with_endings(text: &str, ending: &str) -> Vec<u8> {
    text.replace("\r\n", "\n").replace('\n', ending).into_bytes()
}

#[test]
fn fixtures_parse_to_the_documented_events() {
    for f in fixtures() {
        let r = run(&[f.text.as_bytes()], 1 << 20);
        let count = |k: Kind| r.events.iter().filter(|e| e.kind == k).count();
        assert_eq!(count(Kind::Data), f.data_events, "{}: data events", f.name);
        assert_eq!(count(Kind::CommentOrEmpty), f.comment_events, "{}: comment events", f.name);
        assert_eq!(count(Kind::Oversized), 0, "{}", f.name);
        assert_eq!(r.events.last().map(|e| e.kind), Some(Kind::Done), "{}: ends with [DONE]", f.name);
        assert!(r.events.iter().all(|e| e.complete), "{}: every event complete", f.name);
        assert_eq!(r.usage, f.usage, "{}: usage", f.name);
        let mut content = String::new();
        for e in r.events.iter().filter(|e| e.kind == Kind::Data) {
            let data = e.data.as_deref().unwrap_or_default();
            let v: serde_json::Value = serde_json::from_slice(data)
                .unwrap_or_else(|err| panic!("{}: data is not JSON ({err}): {data:?}", f.name));
            assert_eq!(v["object"], "chat.completion.chunk", "{}", f.name);
            if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
                content.push_str(c);
            }
        }
        assert_eq!(content, f.content, "{}: content", f.name);
    }
}

#[test]
fn fixtures_give_the_same_events_whatever_the_chunking_and_line_endings() {
    for (n, f) in fixtures().iter().enumerate() {
        for (ending, label) in [("\n", "LF"), ("\r\n", "CRLF"), ("\r", "CR")] {
            let input = with_endings(f.text, ending);
            let name = format!("{} ({label})", f.name);
            assert_chunkings(
                &name,
                &input,
                1 << 20,
                chunkings(input.len(), n as u64 * 7 + ending.len() as u64),
            );
            assert_eq!(run(&[&input], 1 << 20).usage, f.usage, "{name}");
        }
    }
}

#[test]
fn the_original_crlf_fixture_has_crlf_endings() {
    let text = include_str!("../../../tests/fixtures/sse/crlf.sse");
    assert!(text.contains("\r\n\r\n") && !text.replace("\r\n", "").contains('\n'));
}

#[test]
fn fixtures_with_a_small_limit_pass_everything_through() {
    for (n, f) in fixtures().iter().enumerate() {
        for max in [0, 1, 40, 300] {
            let input = f.text.as_bytes();
            let mut rng = Lcg(n as u64 + max as u64);
            let cuts = (0..60).map(|_| {
                let mut c: Vec<usize> = (0..1 + rng.below(6)).map(|_| rng.below(input.len() + 1)).collect();
                c.sort_unstable();
                c
            });
            assert_chunkings(&format!("{} (max {max})", f.name), input, max, cuts);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The parser, case by case
// ---------------------------------------------------------------------------------------------------------

fn events(input: &[u8]) -> Vec<Owned> {
    run(&[input], 1 << 20).events
}

fn data_of(input: &[u8]) -> Vec<Option<String>> {
    events(input).iter().map(|e| e.data.as_ref().map(|d| String::from_utf8_lossy(d).into_owned())).collect()
}

#[test]
fn field_syntax_follows_the_sse_spec() {
    // With and without the space; only one space is removed.
    assert_eq!(
        data_of(b"data: a\n\ndata:b\n\ndata:  c\n\n"),
        [Some("a".into()), Some("b".into()), Some(" c".into())]
    );
    // Several data lines join with \n; an empty data line counts.
    assert_eq!(data_of(b"data: a\ndata:\ndata: b\n\n"), [Some("a\n\nb".into())]);
    assert_eq!(data_of(b"data\n\n"), [Some(String::new())]);
    // Other fields and comments are skipped; field names are case-sensitive; a field needs its name whole.
    assert_eq!(
        data_of(b"event: x\nid: 1\nretry: 10\n: c\nDATA: no\ndatax: no\nfoo\ndata: yes\n\n"),
        [Some("yes".into())]
    );
    let e = events(b": ping\n\nevent: only\n\n\n");
    assert_eq!(e.iter().map(|e| e.kind).collect::<Vec<_>>(), [Kind::CommentOrEmpty; 3]);
    assert_eq!(e[2].raw, b"\n", "a stray blank line is an empty event of its own");
    // [DONE] only when exact.
    let kinds = |i: &[u8]| events(i).iter().map(|e| e.kind).collect::<Vec<_>>();
    assert_eq!(kinds(b"data: [DONE]\n\n"), [Kind::Done]);
    assert_eq!(kinds(b"data:[DONE]\r\n\r\n"), [Kind::Done]);
    assert_eq!(kinds(b"data: [DONE] \n\ndata: [done]\n\ndata: [DONE]\ndata:\n\n"), [Kind::Data; 3]);
}

#[test]
fn mixed_line_endings_and_raw_bytes() {
    let input = b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\r: x\n\n";
    let e = events(input);
    assert_eq!(e.len(), 3);
    assert_eq!(e[0].raw, b"data: a\r\ndata: b\rdata: c\n\r\n");
    assert_eq!(e[0].data.as_deref(), Some(&b"a\nb\nc"[..]));
    assert_eq!(e[1].raw, b"data: d\r\r");
    assert_eq!(e[2].raw, b": x\n\n");
    assert_eq!(e[2].kind, Kind::CommentOrEmpty);
}

#[test]
fn a_lone_cr_at_the_end_waits_for_the_next_byte() {
    let mut p = SseParser::new(100);
    let mut seen = Vec::new();
    p.feed(b"data: a\r\n\r", &mut |e| seen.push(Owned::of(&e)));
    assert!(seen.is_empty(), "an LF may follow");
    assert_eq!(p.pending_len(), 10);
    p.feed(b"\ndata: b\n\n", &mut |e| seen.push(Owned::of(&e)));
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].raw, b"data: a\r\n\r\n");
    assert_eq!(p.pending_len(), 0);
    // At the end of the stream the CR ends the event.
    let mut seen = Vec::new();
    p.feed(b"data: c\r\r", &mut |e| seen.push(Owned::of(&e)));
    assert!(seen.is_empty());
    p.finish(&mut |e| seen.push(Owned::of(&e)));
    assert_eq!(seen.len(), 1);
    assert!(seen[0].complete);
    assert_eq!(seen[0].data.as_deref(), Some(&b"c"[..]));
}

#[test]
fn a_stream_cut_mid_event_comes_out_of_finish() {
    let mut p = SseParser::new(100);
    let mut seen = Vec::new();
    p.feed(b"data: 1\n\ndata: {\"usage\":", &mut |e| seen.push(Owned::of(&e)));
    assert_eq!(seen.len(), 1);
    assert_eq!(p.pending_len(), 15);
    p.finish(&mut |e| seen.push(Owned::of(&e)));
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].raw, b"data: {\"usage\":");
    assert_eq!(seen[1].kind, Kind::Data);
    assert!(!seen[1].complete);
    assert_eq!(p.pending_len(), 0);
    // The parser is ready for a new stream; finish with nothing pending emits nothing.
    p.finish(&mut |_| panic!("nothing pending"));
    p.feed(b"data: 2\n\n", &mut |e| assert_eq!(e.data, Some(&b"2"[..])));
}

#[test]
fn events_inside_one_chunk_borrow_the_input() {
    let input = b"data: a\n\ndata: b\n\ndata: c";
    let range = input.as_ptr_range();
    let mut p = SseParser::new(100);
    let mut n = 0;
    p.feed(input, &mut |e| {
        assert!(range.contains(&e.raw.as_ptr()), "not copied");
        n += 1;
    });
    assert_eq!(n, 2);
    assert_eq!(p.pending_len(), 7, "only the incomplete tail is kept");
}

#[test]
fn the_bytes_handed_out_are_the_bytes_fed_for_any_input() {
    const TOKENS: [&[u8]; 14] = [
        b"data:",
        b"data: ",
        b"\r",
        b"\n",
        b"\r\n",
        b": c",
        b"x",
        b"[DONE]",
        b"event: e",
        b"id",
        b" ",
        b":",
        b"{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}",
        b"data: [DONE]\n\n",
    ];
    let mut rng = Lcg(42);
    for round in 0..600 {
        let input: Vec<u8> =
            (0..rng.below(40)).flat_map(|_| TOKENS[rng.below(TOKENS.len())].to_vec()).collect();
        let max = [0, 1, 3, 8, 20, 64, 1 << 20][round % 7];
        let cuts: Vec<Vec<usize>> = (0..8)
            .map(|_| {
                let mut c: Vec<usize> = (0..rng.below(8)).map(|_| rng.below(input.len() + 1)).collect();
                c.sort_unstable();
                c
            })
            .chain([(1..input.len()).collect()])
            .collect();
        assert_chunkings(
            &format!("random {round} {:?}", String::from_utf8_lossy(&input)),
            &input,
            max,
            cuts.into_iter(),
        );
    }
}

// ---------------------------------------------------------------------------------------------------------
// Oversized events
// ---------------------------------------------------------------------------------------------------------

#[test]
fn an_oversized_event_is_passed_through_flagged_and_parsing_resumes() {
    let big = format!("data: {{\"x\":\"{}\"}}\n\n", "y".repeat(5000));
    let input = format!("data: 1\n\n{big}data: {{\"usage\":{{\"prompt_tokens\":3,\"completion_tokens\":4}}}}\n\ndata: [DONE]\n\n");
    let input = input.as_bytes();
    for cuts in [vec![], vec![100], vec![9, 2000, 4000], (1..input.len()).step_by(97).collect()] {
        let mut p = SseParser::new(1024);
        let mut pieces = Vec::new();
        let mut max_pending = 0;
        for chunk in split_at(input, &cuts) {
            p.feed(chunk, &mut |e| pieces.push(Owned::of(&e)));
            max_pending = max_pending.max(p.pending_len());
        }
        p.finish(&mut |e| pieces.push(Owned::of(&e)));
        assert!(max_pending <= 1024, "the oversized event is not buffered ({max_pending} bytes pending)");
        let all: Vec<u8> = pieces.iter().flat_map(|p| p.raw.clone()).collect();
        assert_eq!(all, input, "byte-exact");
        let over: Vec<&Owned> = pieces.iter().filter(|p| p.kind == Kind::Oversized).collect();
        assert!(!over.is_empty());
        assert!(over.iter().all(|p| p.data.is_none()));
        assert_eq!(over.iter().flat_map(|p| p.raw.clone()).collect::<Vec<u8>>(), big.as_bytes());
        assert_eq!(over.iter().filter(|p| p.complete).count(), 1, "one piece ends it");
        let events = merge_oversized(pieces);
        let kinds: Vec<Kind> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [Kind::Data, Kind::Oversized, Kind::Data, Kind::Done], "cut at {cuts:?}");
        assert_eq!(events[2].data.as_deref().and_then(usage_of), Some(usage(3, 4, 0, 0, 0)));
    }
}

#[test]
fn the_limit_counts_the_whole_event() {
    // 10 bytes with its blank line: parsed at a limit of 10, oversized at 9, whatever the chunking.
    let input = b"data: ab\n\n";
    assert_eq!(run(&[input], 10).events[0].kind, Kind::Data);
    assert_eq!(run(&[input], 9).events[0].kind, Kind::Oversized);
    assert_eq!(run(&[&input[..8], &input[8..]], 9).events[0].kind, Kind::Oversized);
    assert_eq!(run(&[&input[..9], &input[9..]], 9).events[0].kind, Kind::Oversized);
}

#[test]
fn an_oversized_event_cut_by_the_end_of_the_stream() {
    let mut p = SseParser::new(4);
    let mut pieces = Vec::new();
    p.feed(b"data: 0123456789", &mut |e| pieces.push(Owned::of(&e)));
    assert_eq!(p.pending_len(), 0, "oversized bytes go out as they come");
    p.feed(b"abc", &mut |e| pieces.push(Owned::of(&e)));
    p.finish(&mut |e| pieces.push(Owned::of(&e)));
    assert_eq!(pieces.len(), 2);
    assert!(pieces.iter().all(|p| p.kind == Kind::Oversized && !p.complete));
    // The next stream starts clean.
    p.feed(b"x\n\n", &mut |e| assert_eq!((e.kind, e.data), (Kind::CommentOrEmpty, None)));
}

// ---------------------------------------------------------------------------------------------------------
// usage_of
// ---------------------------------------------------------------------------------------------------------

#[test]
fn usage_of_reads_the_top_level_usage() {
    let result = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","system_fingerprint":null,
        "choices":[{"index":0,"message":{"role":"assistant","content":"the word \"usage\" in text"},"finish_reason":"stop"}],
        "usage":{"prompt_tokens":100,"completion_tokens":50,"total_tokens":150,
                 "prompt_tokens_details":{"cached_tokens":80,"audio_tokens":0,"cache_write_tokens":10},
                 "completion_tokens_details":{"reasoning_tokens":20,"audio_tokens":null},"cost":0.001,"is_byok":false}}"#;
    assert_eq!(usage_of(result), Some(usage(100, 50, 80, 10, 20)));
    // Null details count 0.
    let u = br#"{"usage":{"prompt_tokens":1,"completion_tokens":2,"prompt_tokens_details":null,
        "completion_tokens_details":{"reasoning_tokens":null}}}"#;
    assert_eq!(usage_of(u), Some(usage(1, 2, 0, 0, 0)));
}

#[test]
fn usage_of_is_none_when_unknown() {
    for body in [
        &br#"{"usage":null}"#[..],
        br#"{"choices":[]}"#,
        br#"{"choices":[{"delta":{"content":"x"},"usage":{"prompt_tokens":1,"completion_tokens":1}}]}"#,
        br#"{"usage":{"completion_tokens":1}}"#,
        br#"{"usage":{"prompt_tokens":-1,"completion_tokens":1}}"#,
        br#"{"usage":{"prompt_tokens":1.5,"completion_tokens":1}}"#,
        br#"{"usage":{"prompt_tokens":"1","completion_tokens":1}}"#,
        br#"{"usage":{"prompt_tokens":1,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":"x"}}}"#,
        br#"{"usage":[]}"#,
        br#"[{"usage":{"prompt_tokens":1,"completion_tokens":1}}]"#,
        br#"{"usage":{"prompt_tokens":1,"completion_tokens":1}"#,
        b"[DONE]",
        b"",
    ] {
        assert_eq!(usage_of(body), None, "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn usage_of_reads_other_cache_spellings_when_openai_s_is_absent() {
    // LiteLLM-style: Anthropic's counts next to OpenAI's.
    let u = br#"{"usage":{"prompt_tokens":1300,"completion_tokens":5,"cache_creation_input_tokens":1253,"cache_read_input_tokens":0}}"#;
    assert_eq!(usage_of(u), Some(usage(1300, 5, 0, 1253, 0)));
    let u = br#"{"usage":{"prompt_tokens":1300,"completion_tokens":5,"cache_read_input_tokens":1024}}"#;
    assert_eq!(usage_of(u), Some(usage(1300, 5, 1024, 0, 0)));
    // DeepSeek.
    let u = br#"{"usage":{"prompt_tokens":100,"completion_tokens":5,"prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":36}}"#;
    assert_eq!(usage_of(u), Some(usage(100, 5, 64, 0, 0)));
    // OpenAI's spelling wins.
    let u = br#"{"usage":{"prompt_tokens":100,"completion_tokens":5,"prompt_cache_hit_tokens":64,
        "prompt_tokens_details":{"cached_tokens":32,"cache_write_tokens":8},"cache_creation_input_tokens":9}}"#;
    assert_eq!(usage_of(u), Some(usage(100, 5, 32, 8, 0)));
}

// ---------------------------------------------------------------------------------------------------------
// Cost
// ---------------------------------------------------------------------------------------------------------

fn pricing(prompt: f64, completion: f64) -> Pricing {
    Pricing { prompt, completion, cache_read: None, cache_write: None, request: None, image: None }
}

#[test]
fn cost_table() {
    struct Case {
        name: &'static str,
        usage: Usage,
        pricing: Pricing,
        /// total, prompt, completion, cache_read, cache_write, request, cache_discount
        expect: (u64, u64, u64, u64, u64, u64, i64),
    }
    let cached = |read: Option<f64>, write: Option<f64>| Pricing {
        cache_read: read,
        cache_write: write,
        ..pricing(3.0, 15.0)
    };
    let cases = [
        Case {
            name: "plain: $3/M prompt, $15/M completion",
            usage: usage(1000, 500, 0, 0, 0),
            pricing: pricing(3.0, 15.0),
            expect: (10_500_000, 3_000_000, 7_500_000, 0, 0, 0, 0),
        },
        Case {
            name: "cache read at its price",
            usage: usage(1000, 0, 800, 0, 0),
            pricing: cached(Some(0.3), None),
            expect: (840_000, 600_000, 0, 240_000, 0, 0, 2_160_000),
        },
        Case {
            name: "cache read, no cache price: at the prompt price",
            usage: usage(1000, 0, 800, 0, 0),
            pricing: pricing(3.0, 15.0),
            expect: (3_000_000, 600_000, 0, 2_400_000, 0, 0, 0),
        },
        Case {
            name: "cache write at its price",
            usage: usage(1200, 10, 0, 1000, 0),
            pricing: cached(Some(0.3), Some(3.75)),
            expect: (4_500_000, 600_000, 150_000, 0, 3_750_000, 0, -750_000),
        },
        Case {
            name: "cache write, no cache price: at the prompt price",
            usage: usage(1200, 10, 0, 1000, 0),
            pricing: pricing(3.0, 15.0),
            expect: (3_750_000, 600_000, 150_000, 0, 3_000_000, 0, 0),
        },
        Case {
            name: "reads and writes together",
            usage: usage(3000, 100, 1000, 1000, 0),
            pricing: cached(Some(0.3), Some(3.75)),
            expect: (8_550_000, 3_000_000, 1_500_000, 300_000, 3_750_000, 0, 2_700_000 - 750_000),
        },
        Case {
            name: "zero-priced endpoint",
            usage: usage(123_456, 7890, 100, 10, 50),
            pricing: pricing(0.0, 0.0),
            expect: (0, 0, 0, 0, 0, 0, 0),
        },
        Case {
            name: "per-request price, once",
            usage: usage(10, 10, 0, 0, 0),
            pricing: Pricing { request: Some(0.005), ..pricing(1.0, 2.0) },
            expect: (5_030_000, 10_000, 20_000, 0, 0, 5_000_000, 0),
        },
        Case {
            name: "per-request price with no tokens",
            usage: Usage::default(),
            pricing: Pricing { request: Some(0.02), ..pricing(0.0, 0.0) },
            expect: (20_000_000, 0, 0, 0, 0, 20_000_000, 0),
        },
        Case {
            name: "reasoning tokens are inside completion tokens",
            usage: usage(0, 100, 0, 0, 60),
            pricing: pricing(1.0, 10.0),
            expect: (1_000_000, 0, 1_000_000, 0, 0, 0, 0),
        },
        Case {
            name: "more cached than prompt tokens: uncached floor at 0",
            usage: usage(100, 0, 150, 0, 0),
            pricing: Pricing { cache_read: Some(0.5), ..pricing(1.0, 1.0) },
            expect: (75_000, 0, 0, 75_000, 0, 0, 75_000),
        },
        Case {
            name: "more cached + written than prompt tokens",
            usage: usage(100, 0, 80, 80, 0),
            pricing: Pricing { cache_read: Some(0.5), cache_write: Some(2.0), ..pricing(1.0, 1.0) },
            expect: (200_000, 0, 0, 40_000, 160_000, 0, 40_000 - 80_000),
        },
        Case {
            name: "rounded once: three parts of 0.4 nano make 1",
            usage: usage(2, 1, 1, 0, 0),
            pricing: Pricing { cache_read: Some(0.0004), ..pricing(0.0004, 0.0004) },
            expect: (1, 1, 0, 0, 0, 0, 0),
        },
        Case {
            name: "float noise does not show",
            usage: usage(3, 3, 0, 0, 0),
            pricing: pricing(0.1, 0.7),
            expect: (2400, 300, 2100, 0, 0, 0, 0),
        },
        Case {
            name: "large counts",
            usage: usage(2_000_000_000, 1_000_000_000, 0, 0, 0),
            pricing: pricing(75.0, 150.0),
            expect: (300_000_000_000_000, 150_000_000_000_000, 150_000_000_000_000, 0, 0, 0, 0),
        },
    ];
    for c in cases {
        let got = cost(&c.usage, &c.pricing);
        let (total, prompt, completion, read, write, request, discount) = c.expect;
        let want = Cost {
            total_nano: total,
            prompt_nano: prompt,
            completion_nano: completion,
            cache_read_nano: read,
            cache_write_nano: write,
            request_nano: request,
            cache_discount_nano: discount,
        };
        assert_eq!(got, want, "{}", c.name);
    }
}

#[test]
fn leftover_units_go_to_the_largest_fractions() {
    // Floors 1 + 5 + 2 = 8 of 10: the two units left go to the .9s, not to the .2.
    assert_eq!(apportion(10, [1.2, 5.9, 2.9]), [1, 6, 3]);
    // A tie goes to the earlier part.
    assert_eq!(apportion(3, [0.5, 0.5, 2.0]), [1, 0, 2]);
}

#[test]
fn cost_parts_always_add_up_to_the_total() {
    let mut rng = Lcg(7);
    for _ in 0..2000 {
        let price = |rng: &mut Lcg| [0.0, 0.0004, 0.1, 0.15, 0.3, 0.7, 1.0, 3.0, 3.75, 15.0][rng.below(10)];
        let opt = |rng: &mut Lcg| if rng.below(2) == 0 { None } else { Some(price(rng)) };
        let p = Pricing {
            prompt: price(&mut rng),
            completion: price(&mut rng),
            cache_read: opt(&mut rng),
            cache_write: opt(&mut rng),
            request: if rng.below(4) == 0 { Some(price(&mut rng) / 1000.0) } else { None },
            image: None,
        };
        let u = usage(
            rng.below(5000) as u64,
            rng.below(5000) as u64,
            rng.below(3000) as u64,
            rng.below(3000) as u64,
            0,
        );
        let c = cost(&u, &p);
        let sum = c.prompt_nano + c.completion_nano + c.cache_read_nano + c.cache_write_nano + c.request_nano;
        assert_eq!(sum, c.total_nano, "{u:?} {p:?} {c:?}");
        let uncached = u.prompt_tokens.saturating_sub(u.cached_tokens + u.cache_write_tokens);
        let exact = uncached as f64 * p.prompt * 1000.0;
        assert!((c.prompt_nano as f64 - exact).abs() < 1.0, "{u:?} {p:?} {c:?}");
    }
}

#[test]
fn cost_is_never_negative() {
    // The catalog rejects such prices; cost still does not go below zero.
    let p = Pricing { cache_read: Some(-1.0), request: Some(f64::NAN), ..pricing(-3.0, f64::INFINITY) };
    let c = cost(&usage(10, 10, 5, 0, 0), &p);
    assert_eq!(
        (c.total_nano, c.prompt_nano, c.completion_nano, c.cache_read_nano, c.request_nano),
        (0, 0, 0, 0, 0)
    );
}

#[test]
fn usd_json_is_exact_decimal() {
    for (nano, text) in [
        (0, "0"),
        (1, "0.000000001"),
        (1234, "0.000001234"),
        (10, "0.00000001"),
        (1_000_000_000, "1"),
        (1_500_000_000, "1.5"),
        (12_345_678_901, "12.345678901"),
        (-750_000, "-0.00075"),
        (-1_000_000_000, "-1"),
        (i64::MAX, "9223372036.854775807"),
        (i64::MIN, "-9223372036.854775808"),
    ] {
        assert_eq!(usd_json(nano), text, "{nano}");
        let parsed: f64 =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{text} is not a JSON number: {e}"));
        assert!((parsed - nano as f64 / 1e9).abs() <= 1e-9 * (nano as f64 / 1e9).abs().max(1.0), "{text}");
    }
}

/// `cost` as the JSON `push_cost_details` appends.
fn details_json(cost: &Cost) -> String {
    let mut out = String::new();
    push_cost_details(&mut out, cost);
    out
}

#[test]
fn cost_details_json_is_openrouter_s_cost_details() {
    let c = cost(
        &usage(3000, 100, 1000, 1000, 0),
        &Pricing {
            cache_read: Some(0.3),
            cache_write: Some(3.75),
            request: Some(0.001),
            ..pricing(3.0, 15.0)
        },
    );
    assert_eq!(
        details_json(&c),
        r#"{"upstream_inference_cost":0.00955,"upstream_inference_prompt_cost":0.00705,"upstream_inference_completions_cost":0.0015}"#
    );
    assert_eq!(
        details_json(&Cost::default()),
        r#"{"upstream_inference_cost":0,"upstream_inference_prompt_cost":0,"upstream_inference_completions_cost":0}"#
    );
}

/// The vendored OpenRouter schemas accept our `cost_details`, and a `usage` built with it.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn cost_details_json_validates_against_the_vendored_schema() {
    let doc: serde_json::Value = serde_json::from_str(include_str!("../../../tests/schemas/openrouter.json"))
        .expect("vendored schemas");
    let validator = |name: &str| {
        let root = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": format!("#/$defs/{name}"),
            "$defs": doc["$defs"].clone(),
        });
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(false)
            .build(&root)
            .expect("schema compiles")
    };
    let c = cost(&usage(1000, 500, 200, 0, 0), &Pricing { cache_read: Some(0.3), ..pricing(3.0, 15.0) });
    let details: serde_json::Value = serde_json::from_str(&details_json(&c)).expect("JSON");
    let errors: Vec<String> = validator("CostDetails").iter_errors(&details).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let usage_json = format!(
        r#"{{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500,"cost":{},"is_byok":false,
            "prompt_tokens_details":{{"cached_tokens":200}},"completion_tokens_details":{{"reasoning_tokens":0}},
            "cost_details":{}}}"#,
        usd_json(c.total_nano as i64),
        details_json(&c)
    );
    let value: serde_json::Value = serde_json::from_str(&usage_json).expect("JSON");
    let errors: Vec<String> = validator("ChatUsage").iter_errors(&value).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
}
