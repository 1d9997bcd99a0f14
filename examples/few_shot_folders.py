"""Make the README's two stories' inputs from shipped data: a support set and held-out
queries of classes no model here was trained on.

    python examples/few_shot_folders.py omniglot --alphabet Tibetan --classes 5 --shots 1 --out my_omniglot
    python examples/few_shot_folders.py clinc150 --intents 4 --shots 5 --out my_intents

omniglot: ``OUT/support/<character>/*.png`` (``--shots`` drawings each) and
``OUT/queries/<character>/*.png`` (the other drawings) from one alphabet of Omniglot's
evaluation set. The default, Tibetan, is in the Vinyals test split (which starts within
Gurmukhi: Kannada, Keble, Malayalam, Manipuri, Mongolian, Old Church Slavonic, Oriya,
Sylheti, Syriac, Tengwar, Tibetan, ULOG are wholly test), so no Vinyals run trained on it;
a Lake-protocol run (``pretrain_conv4_lake``) never saw any evaluation alphabet.
clinc150: ``OUT/support.csv`` (``text,label``: ``--shots`` sentences of each of ``--intents``
test intents, which no run trains on), ``OUT/queries.txt`` (other sentences of those
intents, one a line), ``OUT/queries_answers.csv`` (what each query is), and
``OUT/out_of_scope.txt`` (CLINC150's out-of-scope test sentences, for rejection).

Data come from ``--data-root`` / ``$ATTNMETA_DATA`` (``attnmeta download omniglot`` or
``clinc150`` fetches them). OUT must not exist: nothing of yours is overwritten.
"""

from __future__ import annotations

import argparse
import csv
import sys
import zipfile
from collections import defaultdict
from pathlib import Path


def omniglot(data_root: str | None, alphabet: str, classes: int, shots: int, out: Path) -> None:
    from attnmeta.tasks.omniglot_files import find_omniglot_dir

    zip_path = find_omniglot_dir(data_root) / "images_evaluation.zip"
    with zipfile.ZipFile(zip_path) as archive:
        drawings: dict[str, list[str]] = defaultdict(list)
        alphabets = set()
        for member in archive.namelist():
            parts = member.split("/")
            if len(parts) == 4 and parts[3].endswith(".png"):
                alphabets.add(parts[1])
                if parts[1] == alphabet:
                    drawings[parts[2]].append(member)
        if not drawings:
            sys.exit(f"Error: --alphabet {alphabet!r} is not in Omniglot's evaluation set: "
                     f"expected one of {', '.join(sorted(alphabets))}")
        for character in sorted(drawings)[:classes]:
            members = sorted(drawings[character])
            for index, member in enumerate(members):
                folder = out / ("support" if index < shots else "queries") / character
                folder.mkdir(parents=True, exist_ok=True)
                (folder / Path(member).name).write_bytes(archive.read(member))
    print(f"wrote {out}/support ({classes} characters x {shots}) and {out}/queries")


def clinc150(data_root: str | None, intents: int, shots: int, out: Path) -> None:
    from attnmeta.tasks.clinc150 import load_clinc150_out_of_scope
    from attnmeta.tasks.intents import load_intent_texts

    texts = load_intent_texts("clinc150", data_root, "test")
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, label in zip(texts.texts, texts.labels.tolist()):
        by_intent[texts.class_names[label]].append(text)
    chosen = sorted(by_intent)[:: max(1, len(by_intent) // intents)][:intents]
    out.mkdir(parents=True)
    with (out / "support.csv").open("w", newline="") as support, \
            (out / "queries_answers.csv").open("w", newline="") as answers:
        support_rows, answer_rows = csv.writer(support), csv.writer(answers)
        support_rows.writerow(["text", "label"])
        answer_rows.writerow(["text", "label"])
        queries = []
        for intent in chosen:
            sentences = by_intent[intent]
            support_rows.writerows([(text, intent) for text in sentences[:shots]])
            answer_rows.writerows([(text, intent) for text in sentences[shots:shots + 5]])
            queries += sentences[shots:shots + 5]
    (out / "queries.txt").write_text("\n".join(queries) + "\n")
    (out / "out_of_scope.txt").write_text(
        "\n".join(load_clinc150_out_of_scope(data_root, "test")[:10]) + "\n")
    print(f"wrote {out}/support.csv ({', '.join(chosen)}; {shots} each), queries.txt, "
          "queries_answers.csv, out_of_scope.txt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", choices=("omniglot", "clinc150"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--alphabet", default="Tibetan")  # in the Vinyals test split
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--intents", type=int, default=4)
    parser.add_argument("--shots", type=int, default=1)
    args = parser.parse_args()
    if args.out.exists():
        sys.exit(f"Error: --out {args.out} exists: expected a new folder")
    if min(args.classes, args.intents, args.shots) < 1:
        sys.exit("Error: --classes, --intents and --shots: expected at least 1")
    if args.dataset == "omniglot":
        omniglot(args.data_root, args.alphabet, args.classes, args.shots, args.out)
    else:
        clinc150(args.data_root, args.intents, args.shots, args.out)


if __name__ == "__main__":
    main()
