"""Draw the book's architecture diagrams as plain SVG files in chapters/figures/.

    python tools/diagrams.py            # (re)write every diagram
    python tools/diagrams.py --check    # exit 1 if a committed SVG differs from what this draws

The SVGs are hand-drawn by this script (no graphviz, no CDN): boxes, arrows and text in one
style. Each is at most 420 units wide with text of at least 13 units, so that shown 390 px
wide on a phone its text is at least 12 px; on a desktop the site caps them at 560 px.
"""

from __future__ import annotations

import argparse
import sys
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "chapters" / "figures"
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"
INK, MUTED = "#0f172a", "#475569"
COLOURS = {            # fill, stroke
    "grey": ("#f1f5f9", "#64748b"), "blue": ("#dbeafe", "#1d4ed8"),
    "green": ("#dcfce7", "#15803d"), "orange": ("#ffedd5", "#c2410c"),
    "purple": ("#ede9fe", "#6d28d9"), "red": ("#fee2e2", "#b91c1c"),
    "yellow": ("#fef9c3", "#a16207"), "white": ("#ffffff", "#64748b"),
}
MIN_FONT = 13


class Svg:
    "A drawing: shapes appended in order, written as one SVG file."

    def __init__(self, width: int, height: int, title: str):
        if width > 420:
            raise ValueError(f"width {width} > 420: text would be under 12 px at 390 px")
        self.width, self.height, self.title, self.parts = width, height, title, []

    def text(self, x: float, y: float, s: str, size: int = 14, anchor: str = "middle",
             weight: str = "normal", colour: str = INK, mono: bool = False,
             italic: bool = False) -> None:
        if size < MIN_FONT:
            raise ValueError(f"font size {size} < {MIN_FONT}: {s!r}")
        style = ' font-style="italic"' if italic else ""
        self.parts.append(
            f'<text x="{x:g}" y="{y:g}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{colour}"{style} font-family="'
            f'{MONO if mono else FONT}">{escape(s)}</text>')

    def box(self, x: float, y: float, w: float, h: float, lines, colour: str = "grey",
            size: int = 14, mono: bool = False, weight: str = "normal",
            dashed: bool = False, radius: int = 6) -> tuple[float, float, float, float]:
        fill, stroke = COLOURS[colour]
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        self.parts.append(
            f'<rect x="{x:g}" y="{y:g}" width="{w:g}" height="{h:g}" rx="{radius}" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"{dash}/>')
        lines = [lines] if isinstance(lines, str) else list(lines)
        step = size * 1.25
        top = y + h / 2 - step * (len(lines) - 1) / 2 + size * 0.35
        for i, line in enumerate(lines):
            sub = i > 0 and len(lines) > 1 and line.startswith("(")
            self.text(x + w / 2, top + i * step, line, size=max(MIN_FONT, size - sub),
                      mono=mono or sub, weight=weight if i == 0 else "normal",
                      colour=MUTED if sub else INK)
        return x, y, w, h

    def line(self, points, arrow: bool = True, colour: str = MUTED, dashed: bool = False,
             width: float = 1.6) -> None:
        d = " ".join(f"{x:g},{y:g}" for x, y in points)
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        head = ' marker-end="url(#arrow)"' if arrow else ""
        self.parts.append(f'<polyline points="{d}" fill="none" stroke="{colour}" '
                          f'stroke-width="{width}"{dash}{head}/>')

    def arrow(self, x1, y1, x2, y2, **kw) -> None:
        self.line([(x1, y1), (x2, y2)], **kw)

    def circle(self, x: float, y: float, r: float, label: str, colour: str = "white",
               size: int = 16) -> None:
        fill, stroke = COLOURS[colour]
        self.parts.append(f'<circle cx="{x:g}" cy="{y:g}" r="{r:g}" fill="{fill}" '
                          f'stroke="{stroke}" stroke-width="1.5"/>')
        self.text(x, y + size * 0.36, label, size=size, weight="bold")

    def render(self) -> str:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.width} '
            f'{self.height}" width="{self.width}" height="{self.height}" role="img">\n'
            f"<title>{escape(self.title)}</title>\n"
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" '
            'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="{MUTED}"/></marker></defs>\n'
            f'<rect width="{self.width}" height="{self.height}" fill="#ffffff"/>\n'
            + "\n".join(self.parts) + "\n</svg>\n")


def input_embeddings() -> Svg:
    tokens = ["[CLS]", "my", "dog", "barks", "[SEP]", "it", "[SEP]"]
    segs = ["A"] * 5 + ["B"] * 2
    n, x0, cw = len(tokens), 12, 56
    s = Svg(420, 430, "BERT's input: token + segment + position embeddings")
    s.text(210, 22, "BERT's input layer: three embeddings, summed", size=15, weight="bold")
    rows = [("input tokens", None), ("token embeddings", "blue"),
            ("segment embeddings", "green"), ("position embeddings", "orange")]
    y = 38
    for r, (label, colour) in enumerate(rows):
        s.text(x0, y + 13, label, size=13, anchor="start", colour=MUTED)
        for i, tok in enumerate(tokens):
            x = x0 + i * cw
            if colour is None:
                s.box(x, y + 19, cw - 6, 28, tok, "white", size=13, mono=True)
            else:
                sub = {"blue": f"E {tok.strip('[]')[:3]}", "green": f"E {segs[i]}",
                       "orange": f"E {i}"}[colour]
                s.box(x, y + 19, cw - 6, 28, sub, colour, size=13, mono=True)
        if r > 1:
            s.text(x0 + n * cw - 4, y + 13, "+", size=16, anchor="end", weight="bold")
        y += 62
    s.text(210, y + 10, "=  sum, position by position", size=14, weight="bold")
    s.box(60, y + 24, 300, 34, ["LayerNorm, then dropout"], "purple", size=14)
    s.arrow(210, y + 58, 210, y + 78)
    s.box(60, y + 80, 300, 40, ["one vector per token", "(batch, seq, hidden)"], "grey")
    s.text(210, y + 140, "segment: sentence A or B · position: 0 … 511, learned",
           size=13, colour=MUTED)
    return s


def multi_head_attention() -> Svg:
    s = Svg(420, 620, "Multi-head attention, with the shape after each step")
    s.text(210, 22, "Multi-head attention: shapes at each step", size=15, weight="bold")
    s.box(130, 36, 160, 36, ["x", "(B, T, d)"], "grey", size=14)
    for i, (name, x) in enumerate([("Q", 20), ("K", 150), ("V", 280)]):
        s.line([(210, 72), (210, 86), (x + 60, 86), (x + 60, 98)])
        s.box(x, 100, 120, 40, [f"Linear W{name}", "(B, T, d)"], "blue", size=14)
        s.arrow(x + 60, 140, x + 60, 158)
        s.box(x, 160, 120, 44, ["split heads", "(B, h, T, d/h)"], "green", size=14)
    # Q and K meet
    s.line([(80, 204), (80, 222), (140, 222), (140, 236)])
    s.line([(210, 204), (210, 222), (150, 222), (150, 236)])
    s.box(40, 238, 220, 48, ["scores = Q Kᵀ / √(d/h)", "(B, h, T, T)"], "purple", size=14)
    s.arrow(150, 286, 150, 302)
    s.box(40, 304, 220, 44, ["+ mask (padding → −∞)", "(B, h, T, T)"], "red", size=14)
    s.arrow(150, 348, 150, 364)
    s.box(40, 366, 220, 44, ["softmax over keys", "(B, h, T, T)"], "purple", size=14)
    s.arrow(150, 410, 150, 426)
    s.line([(340, 204), (340, 450), (262, 450)])
    s.box(40, 428, 220, 44, ["weights × V", "(B, h, T, d/h)"], "purple", size=14)
    s.arrow(150, 472, 150, 488)
    s.box(40, 490, 220, 44, ["merge heads", "(B, T, d)"], "green", size=14)
    s.arrow(150, 534, 150, 550)
    s.box(40, 552, 220, 44, ["Linear WO", "(B, T, d)"], "blue", size=14)
    s.text(345, 520, "h heads", size=13, colour=MUTED)
    s.text(345, 537, "in parallel;", size=13, colour=MUTED)
    s.text(345, 554, "d = h · (d/h)", size=13, colour=MUTED)
    s.text(210, 614, "B batch · T tokens · d hidden size · h heads", size=13,
           colour=MUTED)
    return s


def _block(s: Svg, x: float, pre: bool) -> None:
    "One encoder layer, post-LN (BERT) or pre-LN, drawn in a 190-wide column at x."
    cx, w = x + 95, 150
    bx = cx - w / 2
    s.text(cx, 50, "pre-LN" if pre else "post-LN (BERT)", size=15, weight="bold")
    s.text(cx, 68, "LN before each sublayer" if pre else "LN after each residual",
           size=13, colour=MUTED)
    y = 84
    s.box(bx + 30, y, w - 60, 28, "x", "white", size=14)
    top = y + 28
    y += 44
    steps = (["LayerNorm", "self-attention", "+", "LayerNorm", "feed-forward", "+"] if pre
             else ["self-attention", "+", "LayerNorm", "feed-forward", "+", "LayerNorm"])
    colour = {"LayerNorm": "yellow", "self-attention": "purple", "feed-forward": "blue"}
    skip_from = top
    prev = top
    for step in steps:
        if step == "+":
            s.arrow(cx, prev, cx, y + 2)
            s.circle(cx, y + 16, 14, "+")
            s.line([(cx, skip_from + 8), (bx - 8, skip_from + 8), (bx - 8, y + 16),
                    (cx - 14, y + 16)])
            prev = y + 30
            skip_from = prev
            y += 48
        else:
            s.arrow(cx, prev, cx, y)
            s.box(bx, y, w, 34, step, colour[step], size=14)
            prev = y + 34
            if not pre and step == "LayerNorm":
                skip_from = prev         # post-LN: the next residual starts after LN
            y += 52
    s.arrow(cx, prev, cx, y)
    s.box(bx + 30, y, w - 60, 28, "out", "white", size=14)


def post_ln_vs_pre_ln() -> Svg:
    s = Svg(420, 520, "Post-LN and pre-LN encoder layers side by side")
    s.text(210, 22, "Where LayerNorm goes in an encoder layer", size=15, weight="bold")
    _block(s, 15, pre=False)
    _block(s, 215, pre=True)
    s.text(210, 500, "the line around each sublayer is the residual", size=13,
           colour=MUTED)
    s.text(210, 516, "pre-LN stacks add one LayerNorm after the last layer", size=13,
           colour=MUTED)
    return s


def bert_heads() -> Svg:
    s = Svg(420, 560, "BertModel with its masked-LM head and classification head")
    s.text(210, 22, "BERT and its two heads", size=15, weight="bold")
    s.box(90, 36, 240, 40, ["input_ids, token_type_ids", "(B, T)"], "white", size=14)
    s.arrow(210, 76, 210, 92)
    s.box(90, 94, 240, 40, ["embeddings", "token + segment + position"], "orange",
          size=14)
    s.arrow(210, 134, 210, 150)
    s.box(90, 152, 240, 58, ["encoder layer × N", "attention + feed-forward",
                             "(B, T, d)"], "purple", size=14)
    s.arrow(210, 210, 210, 226)
    s.box(90, 228, 240, 40, ["last_hidden_state", "(B, T, d)"], "grey", size=14)
    s.text(210, 292, "BertModel", size=13, colour=MUTED, italic=True)
    s.parts.insert(0, '<rect x="78" y="30" width="264" height="250" rx="10" '
                   'fill="none" stroke="#94a3b8" stroke-dasharray="6 4"/>')
    # MLM head: every position
    s.line([(150, 268), (150, 300), (105, 300), (105, 316)])
    s.text(105, 312, "", size=13)
    s.box(10, 318, 190, 58, ["MLM head", "dense + GELU + LN", "(B, T, d)"], "blue",
          size=14)
    s.arrow(105, 376, 105, 392)
    s.box(10, 394, 190, 58, ["decoder, tied to the", "token embeddings",
                             "(B, T, vocab)"], "blue", size=14)
    s.arrow(105, 452, 105, 468)
    s.box(10, 470, 190, 40, ["loss on masked", "positions only"], "white", size=14)
    # classification head: [CLS] only
    s.line([(270, 268), (270, 300), (315, 300), (315, 316)])
    s.box(220, 318, 190, 58, ["pooler: [CLS] row", "dense + tanh", "(B, d)"], "green",
          size=14)
    s.arrow(315, 376, 315, 392)
    s.box(220, 394, 190, 58, ["dropout + linear", "classifier", "(B, num_labels)"],
          "green", size=14)
    s.arrow(315, 452, 315, 468)
    s.box(220, 470, 190, 40, ["cross-entropy", "with the label"], "white", size=14)
    s.text(105, 534, "BertForMaskedLM", size=13, weight="bold", colour=MUTED)
    s.text(315, 534, "BertForSequence-", size=13, weight="bold", colour=MUTED)
    s.text(315, 550, "Classification", size=13, weight="bold", colour=MUTED)
    return s


def mlm_masking() -> Svg:
    tokens = ["the", "cat", "sat", "on", "the", "warm", "mat"]
    s = Svg(420, 530, "MLM corruption: 15% of tokens chosen, then 80/10/10")
    s.text(210, 22, "Masked-LM corruption of one sentence", size=15, weight="bold")
    cw, x0 = 57, 12

    def row(y, words, colours, label):
        s.text(x0, y - 6, label, size=13, anchor="start", colour=MUTED)
        for i, (w, c) in enumerate(zip(words, colours)):
            s.box(x0 + i * cw, y, cw - 6, 28, w, c, size=13, mono=True)

    row(52, tokens, ["white"] * 7, "1. the input")
    chosen = {1: "mask", 3: "random", 5: "keep"}
    row(116, tokens, ["yellow" if i in chosen else "white" for i in range(7)],
        "2. choose 15% of positions (3 here, one of each case)")
    # the three fates
    y = 180
    s.text(x0, y, "3. each chosen position becomes", size=13, anchor="start",
           colour=MUTED)
    fates = [("80%", "[MASK]", "red"), ("10%", "a random token", "purple"),
             ("10%", "itself, unchanged", "green")]
    for k, (p, what, c) in enumerate(fates):
        yy = y + 14 + k * 40
        s.box(x0, yy, 60, 30, p, c, size=14, weight="bold")
        s.text(x0 + 72, yy + 20, what, size=14, anchor="start")
    examples = {1: ("[MASK]", "red"), 3: ("tree", "purple"), 5: ("warm", "green")}
    words = [examples[i][0] if i in examples else t for i, t in enumerate(tokens)]
    row(352, words, [examples[i][1] if i in examples else "white" for i in range(7)],
        "4. what the model reads")
    labels = [tokens[i] if i in chosen else "-100" for i in range(7)]
    row(420, labels, ["yellow" if i in chosen else "grey" for i in range(7)],
        "5. labels (-100: not scored)")
    s.text(210, 480, "the loss is cross-entropy at the chosen positions only;",
           size=13, colour=MUTED)
    s.text(210, 498, "kept and random tokens make it model every input token,",
           size=13, colour=MUTED)
    s.text(210, 516, "since text for fine-tuning never contains [MASK]", size=13,
           colour=MUTED)
    return s


def finetune_cls() -> Svg:
    tokens = ["[CLS]", "a", "fine", "film", "[SEP]"]
    s = Svg(420, 500, "Fine-tuning a classifier on the [CLS] vector")
    s.text(210, 22, "Fine-tuning on [CLS]", size=15, weight="bold")
    cw, x0 = 76, 24
    for i, t in enumerate(tokens):
        s.box(x0 + i * cw, 40, cw - 10, 28, t, "yellow" if i == 0 else "white",
              size=13, mono=True)
        s.arrow(x0 + i * cw + 33, 68, x0 + i * cw + 33, 90)
    s.box(x0, 92, 5 * cw - 10, 54, ["pretrained encoder (chapter 6)",
                                    "every weight is trained, small learning rate"],
          "purple", size=14)
    for i in range(5):
        s.arrow(x0 + i * cw + 33, 146, x0 + i * cw + 33, 166)
        s.box(x0 + i * cw, 168, cw - 10, 28, f"h{i}", "blue" if i == 0 else "grey",
              size=13, mono=True)
    s.text(x0 + 2.5 * cw + 30, 218, "other positions: unused by this head", size=13,
           colour=MUTED)
    s.line([(x0 + 33, 196), (x0 + 33, 240), (150, 240), (150, 254)])
    s.box(60, 256, 180, 40, ["pooler", "dense + tanh (B, d)"], "green", size=14)
    s.arrow(150, 296, 150, 312)
    s.box(60, 314, 180, 40, ["dropout + linear", "(B, 2) logits"], "green", size=14)
    s.arrow(150, 354, 150, 370)
    s.box(60, 372, 180, 40, ["softmax", "p(negative), p(positive)"], "white", size=14)
    s.arrow(240, 392, 268, 392)
    s.box(270, 372, 140, 40, ["cross-entropy", "with the label"], "red", size=14)
    s.text(210, 446, "new: pooler and classifier start random;", size=13,
           colour=MUTED)
    s.text(210, 464, "the encoder starts from pretraining", size=13, colour=MUTED)
    s.text(210, 488, "(chapter 7 also freezes layers or adds LoRA)", size=13,
           colour=MUTED)
    return s


def lstm_unrolled() -> Svg:
    s = Svg(420, 560, "An LSTM cell and the LSTM unrolled over time")
    s.text(210, 22, "The LSTM, unrolled over three steps", size=15, weight="bold")
    xs = [20, 150, 280]
    for t, x in enumerate(xs, 1):
        s.box(x, 70, 110, 60, ["LSTM cell", f"step {t}"], "blue", size=14)
        s.arrow(x + 55, 170, x + 55, 132)
        s.text(x + 55, 188, f"x{t}", size=14, mono=True)
        s.arrow(x + 55, 70, x + 55, 46)
        s.text(x + 55, 40, f"h{t}", size=14, mono=True)
        if t < 3:
            s.arrow(x + 110, 88, xs[t] - 2, 88)
            s.arrow(x + 110, 116, xs[t] - 2, 116)
    for x in (130, 260):
        s.text(x + 10, 82, "c", size=13, mono=True, colour=MUTED)
        s.text(x + 10, 108, "h", size=13, mono=True, colour=MUTED)
    s.text(210, 212, "same weights at every step; step t waits for step t-1", size=13,
           colour=MUTED)
    # one cell in detail
    s.parts.append('<line x1="10" y1="228" x2="410" y2="228" stroke="#cbd5e1"/>')
    s.text(210, 252, "inside one cell", size=15, weight="bold")
    s.box(20, 268, 380, 36, ["[x_t, h_t-1] → Linear → 4 · hidden"], "grey", size=14,
          mono=False)
    gates = [("f", "forget", "σ", "red"), ("i", "input", "σ", "green"),
             ("g", "candidate", "tanh", "yellow"), ("o", "output", "σ", "purple")]
    for k, (g, name, act, c) in enumerate(gates):
        x = 20 + k * 97
        s.arrow(x + 43, 304, x + 43, 320)
        s.box(x, 322, 86, 48, [f"{g} = {act}(·)", f"({name})"], c, size=14)
    s.box(20, 396, 310, 40, ["c_t = f ⊙ c_t-1 + i ⊙ g"], "blue", size=15, mono=True)
    s.box(20, 456, 380, 40, ["h_t = o ⊙ tanh(c_t)"], "blue", size=15, mono=True)
    for k in range(3):
        s.arrow(20 + k * 97 + 43, 370, 20 + k * 97 + 43, 394)
    s.arrow(20 + 3 * 97 + 43, 370, 20 + 3 * 97 + 43, 454)
    s.arrow(150, 436, 150, 454)
    s.text(210, 524, "the additive path through c is what carries", size=13,
           colour=MUTED)
    s.text(210, 542, "gradients across many steps", size=13, colour=MUTED)
    return s


def pipeline() -> Svg:
    s = Svg(420, 580, "The whole pipeline of the book")
    s.text(210, 22, "What you built, chapter by chapter", size=15, weight="bold")
    steps = [
        (["raw text", "WikiText-2 · SST-2 reviews"], "white", "0"),
        (["WordPiece tokenizer", "text → ids"], "orange", "1"),
        (["embeddings + positions", "ids → (B, T, d)"], "orange", "1, 2"),
        (["encoder: attention + FFN × N", "(B, T, d) → (B, T, d)"], "purple", "3, 4"),
        (["MLM pretraining", "WikiText-2, no labels"], "blue", "6"),
        (["fine-tuning on [CLS]", "SST-2 sentiment labels"], "green", "7"),
        (["encoder-book CLI", "tokenizer · pretrain · finetune · predict"], "grey",
         "7b"),
    ]
    y = 40
    for k, (lines, colour, ch) in enumerate(steps):
        s.box(70, y, 260, 54, lines, colour, size=14)
        s.text(58, y + 32, f"ch. {ch}", size=13, anchor="end", colour=MUTED)
        if k < len(steps) - 1:
            s.arrow(200, y + 54, 200, y + 72)
        y += 74
    s.box(340, 372, 74, 100, ["LSTM", "baseline", "ch. 5"], "red", size=13,
          dashed=True)
    s.line([(330, 100 + 114), (377, 214), (377, 370)], dashed=True)
    s.line([(377, 472), (377, 484), (330, 484)], dashed=True)
    s.text(210, y + 6, "the same code in notebooks, package and CLI", size=13,
           colour=MUTED)
    return s


def positional_encodings() -> Svg:
    s = Svg(420, 510, "Three ways to give the encoder positions: sinusoidal, learned, rotary")
    s.text(210, 22, "Where positions enter: three kinds", size=15, weight="bold")
    panels = [
        ("sinusoidal", "orange", ["fixed sin/cos table", "no parameters"],
         ["added to the", "token embeddings"], "any length: the formula extends"),
        ("learned (BERT)", "orange", ["trained table:", "512 × hidden weights"],
         ["added to the", "token embeddings"], "no row beyond position 511"),
        ("rotary (RoPE)", "purple", ["rotate q and k by", "an angle ∝ position"],
         ["inside attention,", "no parameters"], "the scores see positions only as the offset i − j"),
    ]
    y = 40
    for k, (title, colour, what, where, note) in enumerate(panels):
        s.text(12, y + 14, title, size=15, anchor="start", weight="bold")
        s.box(12, y + 24, 196, 48, what, colour, size=14)
        s.arrow(208, y + 48, 226, y + 48)
        s.box(228, y + 24, 180, 48, where, "blue" if colour == "orange" else "purple",
              size=14)
        s.text(12, y + 94, note, size=13, anchor="start", colour=MUTED)
        y += 118
        if k < 2:
            s.parts.append(f'<line x1="10" y1="{y - 8}" x2="410" y2="{y - 8}" '
                           'stroke="#e2e8f0"/>')
    s.box(12, y + 2, 396, 54, ["sinusoidal, learned: before Q, K, V",
                               "rotary: on Q and K, after the projections"], "grey",
          size=14)
    s.text(210, y + 80, "chapter 2 builds and tests all three", size=13, colour=MUTED)
    return s


def cloze_prompt() -> Svg:
    tokens = [("[CLS]", 54), ("a fine film", 96), ("it", 34), ("was", 42),
              ("[MASK]", 62), (".", 26), ("[SEP]", 54)]
    s = Svg(420, 470, "Classification as a cloze: the masked-LM head at the slot")
    s.text(210, 22, "A prompt: the task as a cloze", size=15, weight="bold")
    s.text(210, 44, "template  {text} it was [MASK] .", size=13, mono=True,
           colour=MUTED)
    x, centres = 14, {}
    for i, (t, w) in enumerate(tokens):
        colour = "orange" if t == "[MASK]" else ("white" if i == 1 else "grey")
        s.box(x, 58, w, 28, t, colour, size=13, mono=True)
        s.arrow(x + w / 2, 86, x + w / 2, 104)
        centres[t], x = x + w / 2, x + w + 5
    s.box(14, 106, x - 19, 46, ["pretrained encoder", "(unchanged: no new weights)"],
          "purple", size=14)
    mx = centres["[MASK]"]
    s.arrow(mx, 152, mx, 176)
    s.box(mx - 70, 178, 140, 40, ["MLM head", "(vocab,) scores"], "green", size=14)
    s.arrow(mx, 218, mx, 240)
    s.box(150, 242, 256, 60, ["read two of them:", "great -> positive",
                              "terrible -> negative"], "white", size=14)
    s.arrow(278, 302, 278, 322)
    s.box(150, 324, 256, 40, ["softmax over the label words", "(B, 2)"], "blue",
          size=14)
    s.arrow(278, 364, 278, 384)
    s.box(150, 386, 256, 40, ["/ p(label | content-free input)", "calibration"],
          "yellow", size=14)
    s.text(14, 250, "verbalizer:", size=13, anchor="start", colour=MUTED)
    s.text(14, 268, "label ->", size=13, anchor="start", colour=MUTED)
    s.text(14, 286, "words", size=13, anchor="start", colour=MUTED)
    s.text(210, 456, "zero-shot: no training; few-shot: train the MLM head", size=13,
           colour=MUTED)
    return s


def sentence_pair() -> Svg:
    a, b = ["he", "left", "early"], ["he", "went", "home"]
    tokens = ["[CLS]", *a, "[SEP]", *b, "[SEP]"]
    segs = ["A"] * (len(a) + 2) + ["B"] * (len(b) + 1)
    x0, cw = 6, 46
    s = Svg(420, 430, "A sentence pair: two segments, one label from [CLS]")
    s.text(210, 22, "Two texts, one input, one label", size=15, weight="bold")
    s.text(x0, 48, "text A", size=13, anchor="start", colour=MUTED)
    s.text(x0 + (len(a) + 2) * cw, 48, "text B", size=13, anchor="start", colour=MUTED)
    for i, tok in enumerate(tokens):
        x = x0 + i * cw
        colour = "yellow" if i == 0 else ("white" if segs[i] == "A" else "grey")
        s.box(x, 56, cw - 4, 28, tok.replace("[", "").replace("]", ""), colour,
              size=13, mono=True)
        s.box(x, 92, cw - 4, 26, segs[i], "green" if segs[i] == "A" else "orange",
              size=13, mono=True)
    s.text(210, 136, "token_type_ids: 0 for A (and [CLS]), 1 for B", size=13,
           colour=MUTED)
    s.arrow(210, 142, 210, 160)
    s.box(40, 162, 340, 54, ["encoder: every token attends to both texts",
                              "(batch, seq, hidden)"], "purple", size=14)
    s.line([(x0 + 21, 216), (x0 + 21, 240), (150, 240), (150, 254)])
    s.box(60, 256, 180, 40, ["pooler on [CLS]", "dense + tanh (B, d)"], "green", size=14)
    s.arrow(150, 296, 150, 312)
    s.box(60, 314, 180, 40, ["linear", "(B, 2) logits"], "green", size=14)
    s.arrow(240, 334, 268, 334)
    s.box(270, 314, 140, 40, ["paraphrase?", "entailed?"], "white", size=14)
    s.text(210, 384, "too long: the longer text loses its last tokens", size=13,
           colour=MUTED)
    s.text(210, 404, "first, one at a time (longest_first)", size=13, colour=MUTED)
    return s


def qa_windows() -> Svg:
    s = Svg(420, 400, "Extractive QA: windows over a long context, a start and an end")
    s.text(210, 22, "A question, a long context, windows", size=15, weight="bold")
    s.box(10, 38, 400, 28, "context: 600 tokens", "white", size=13)
    s.box(250, 38, 56, 28, "answer", "yellow", size=13)
    for k, (x, colour) in enumerate(((10, "blue"), (150, "green"), (290, "orange"))):
        y = 80 + 34 * k
        s.box(x, y, 190 if k < 2 else 120, 26, f"window {k + 1}", colour, size=13)
    s.text(210, 200, "windows overlap by stride tokens; each holds", size=13, colour=MUTED)
    s.text(210, 218, "[CLS] question [SEP] its part of the context [SEP]", size=13,
           colour=MUTED)
    s.arrow(210, 226, 210, 244)
    s.box(40, 246, 340, 40, ["encoder, then a linear layer: 2 scores", "per token (start, end)"],
          "purple", size=14)
    s.arrow(210, 286, 210, 304)
    s.box(40, 306, 340, 40, ["best span over all windows:", "start <= end, at most 30 tokens"],
          "green", size=14)
    s.text(210, 370, "a window without the whole answer learns [CLS]", size=13,
           colour=MUTED)
    s.text(210, 388, "characters <-> tokens: the offset mapping", size=13, colour=MUTED)
    return s


DIAGRAMS = {
    "positional_encodings": positional_encodings,
    "input_embeddings": input_embeddings, "multi_head_attention": multi_head_attention,
    "post_ln_vs_pre_ln": post_ln_vs_pre_ln, "bert_heads": bert_heads,
    "mlm_masking": mlm_masking, "finetune_cls": finetune_cls,
    "lstm_unrolled": lstm_unrolled, "pipeline": pipeline,
    "cloze_prompt": cloze_prompt, "sentence_pair": sentence_pair,
    "qa_windows": qa_windows,
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare, write nothing")
    args = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    stale = []
    for name, draw in DIAGRAMS.items():
        path, svg = OUT / f"{name}.svg", draw().render()
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != svg:
                stale.append(path.name)
        else:
            path.write_text(svg, encoding="utf-8")
    if stale:
        print("diagrams out of date (run python tools/diagrams.py):", *stale)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
