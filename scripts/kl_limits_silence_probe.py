"""How close SmolLM2's student comes to silence, whatever the teacher says (docs/kl-limits.md, "The exploit").

    python scripts/kl_limits_silence_probe.py

For each teacher line (the empty line, fillers, requests for silence, farewells), the opening of the teacher-student
environment continued by that line and the student's marker, and the base's next-token distribution there: the
probability that the student's turn ends at once (a first token that starts with a line break, or a special token:
an empty turn), its most likely first tokens, and the line it writes at temperature 0 (the environment samples at
0.05). One forward pass per line on CPU.
"""

from __future__ import annotations

import torch

from goodhartlab.text.models import load_policy
from goodhartlab.text.teacher_student import OPENING

TEACHER_LINES = ["", " ...", " .", " ?", " :)", " Shh.", " Be quiet.", " Please say nothing.", " (silence)",
                 " Don't reply.", " Just write nothing.", " OK.", " Good.", " Nice.", " Great!", " Thank you.",
                 " Bye.", " See you tomorrow!", " Let's stop here.", " ...\nStudent: ...\nTeacher: ..."]


def main() -> None:
    torch.set_num_threads(1)
    model, tokenizer = load_policy()
    special = set(tokenizer.all_special_ids)
    enders = torch.tensor([token < len(tokenizer) and (token in special or tokenizer.decode([token]).startswith("\n"))
                           for token in range(model.config.vocab_size)])
    print("| teacher line | P(empty student turn) | most likely first tokens | student's line at temperature 0 |")
    print("|---|---|---|---|")
    for line in TEACHER_LINES:
        ids = tokenizer(OPENING + line + "\nStudent:", return_tensors="pt").input_ids
        with torch.no_grad():
            log_probs = model(ids).logits[0, -1].log_softmax(-1)
            written = model.generate(ids, max_new_tokens=16, do_sample=False)
        top = log_probs.topk(3)
        firsts = ", ".join(f"{tokenizer.decode([int(i)])!r} {float(v.exp()):.2f}"
                           for v, i in zip(top.values, top.indices, strict=True))
        reply = tokenizer.decode(written[0, ids.shape[1]:]).split("\n")[0].strip()
        shown = line.strip().replace("\n", " / ") or "(empty)"
        print(f"| {shown} | {float(log_probs.exp()[enders].sum()):.4f} | {firsts} | {reply} |")


if __name__ == "__main__":
    main()
