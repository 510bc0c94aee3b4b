#!/usr/bin/env python3
"""Differential test of `shadowllm eval` against the real lm-evaluation-harness, item by item.

Both sides run the same model (SmolLM2-135M-Instruct, the Q4_1 GGUF dequantised to a float32
Hugging Face directory, so the weights are identical) on the same task files, and every item is
compared: the context and continuation strings after the templates, the per-choice summed
log-likelihoods, and the acc / acc_norm decisions (LAMBADA: log-likelihood and greedy match;
WikiText: per-article log-likelihood, word/byte perplexity and bits per byte).

lm-eval keeps its own task configs (doc_to_text, doc_to_choice, process_docs, metrics): for each
task the script writes a YAML that `include:`s the builtin config of the installed lm-eval and
only points `dataset_path` at a local jsonl in the Hugging Face dataset's schema. The task files
our side reads are in the formats of DESIGN §6; PIQA, HellaSwag and WikiText come from
../shared/data, the others are small hand-written files with awkward cases (see FIXTURES below).

Steps (all outputs under --work, default /tmp/lmeval-diff):

    convert   GGUF -> WORK/smollm2-hf (config.json, model.safetensors f32, tokenizer.json,
              tokenizer_config.json); then checks that transformers and `shadowllm` agree on
              the log-likelihood of one short text.
    data      writes WORK/data/<task>/... (our formats) and WORK/lmeval-data/<task>.jsonl
              (the HF schemas lm-eval's configs expect).
    run       runs both sides for every task (or --tasks a,b) and writes WORK/report.md and
              WORK/report.json.

Run from the package root (needs `pip install lm-eval==0.4.13 accelerate` with transformers, a
CPU torch, gguf, tokenizers and safetensors, and a release build of shadowllm that has
`eval --samples`):

    python3 scripts/reference/lmeval_differential.py            # convert + data + run, ~8 min
    python3 scripts/reference/lmeval_differential.py run --tasks piqa,copa --limit 10

Exit status 1 when anything disagrees: a string, a decision, or a log-likelihood beyond
--tol (default 1e-3) absolute plus 2e-5 relative (float32 on both sides, summed in different
orders: about 1e-5 per token).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = ROOT.parent / "shared" / "data"
DEFAULT_GGUF = pathlib.Path.home() / ".cache" / "shadowllm" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CLI = ROOT / ".build" / "release" / "shadowllm"
# Float32 on both sides, different summation orders: a summed log-likelihood may differ by about
# 1e-5 per token, so the tolerance is --tol absolute plus REL_TOL of the value (WikiText's
# articles sum thousands of tokens).
REL_TOL = 2e-5
sys.path.insert(0, str(HERE))


# ----------------------------------------------------------------------------------------------
# GGUF -> Hugging Face directory (float32)

def convert(gguf_path: pathlib.Path, out: pathlib.Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file
    from make_fixtures import gguf_meta, read_gguf_tensors, llama_state_dict_from_gguf
    from tokenizer_differential import smollm2_reference

    reader, w = read_gguf_tensors(gguf_path)
    meta = lambda k: gguf_meta(reader, k)
    assert meta("general.architecture") == "llama"
    n_layer, n_embd = int(meta("llama.block_count")), int(meta("llama.embedding_length"))
    n_head, n_kv = int(meta("llama.attention.head_count")), int(meta("llama.attention.head_count_kv"))
    tied = "output.weight" not in w
    bos, eos = int(meta("tokenizer.ggml.bos_token_id")), int(meta("tokenizer.ggml.eos_token_id"))
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": int(w["token_embd.weight"].shape[0]), "hidden_size": n_embd,
        "intermediate_size": int(meta("llama.feed_forward_length")),
        "num_hidden_layers": n_layer, "num_attention_heads": n_head, "num_key_value_heads": n_kv,
        "head_dim": n_embd // n_head, "hidden_act": "silu",
        "max_position_embeddings": int(meta("llama.context_length")),
        "rms_norm_eps": float(f"{float(meta('llama.attention.layer_norm_rms_epsilon')):.7g}"),
        "rope_theta": float(meta("llama.rope.freq_base")), "rope_scaling": None,
        "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": tied,
        "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": int(meta("tokenizer.ggml.padding_token_id")),
        "torch_dtype": "float32", "initializer_range": 0.02, "use_cache": True,
    }
    sd = llama_state_dict_from_gguf(w, n_layer, n_head, n_kv, tied)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()},
              str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps({"bos_token_id": bos, "eos_token_id": eos}) + "\n")
    tok = smollm2_reference(gguf_path)
    tok.save(str(out / "tokenizer.json"))
    tokens = meta("tokenizer.ggml.tokens")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False, "add_eos_token": False,
        "bos_token": tokens[bos], "eos_token": tokens[eos],
        "unk_token": tokens[int(meta("tokenizer.ggml.unknown_token_id"))],
        "pad_token": tokens[int(meta("tokenizer.ggml.padding_token_id"))],
        "model_max_length": config["max_position_embeddings"], "clean_up_tokenization_spaces": False,
    }, indent=2) + "\n")
    print(f"wrote {out} (bos {tokens[bos]!r} = {bos}, eos {tokens[eos]!r} = {eos}, tied {tied})")


# ----------------------------------------------------------------------------------------------
# Task files. Hand-written items for the tasks without a file in ../shared/data; the awkward
# cases are deliberate: trailing/leading spaces, non-ASCII letters and punctuation, straight and
# curly quotes, a COPA premise without its final period, ARC labels 1-4 and A-E with 3 to 5
# choices, Winogrande blanks in mid-sentence and before "'s", a LAMBADA target with punctuation.

COPA = [  # premise, choice1, choice2, question, label
    ("My body cast a shadow over the grass.", "The sun was rising.", "The grass was cut.", "cause", 0),
    ("The woman tolerated her friend's difficult behavior.", "The woman knew her friend was going through a hard time.", "The woman felt that her friend took advantage of her kindness.", "cause", 0),
    ("The women met for coffee", "The cafe reopened in a new location.", "They wanted to catch up with each other.", "cause", 1),
    ("The runner wore shorts.", "The forecast predicted high temperatures.", "She planned to run along the beach.", "cause", 0),
    ("The guests of the party hid behind the couch.", "It was a surprise party.", "It was a birthday party.", "cause", 0),
    ("The politician lost the election.", "He ran negative campaign ads.", "No one voted for him.", "cause", 1),
    ("The stain came out of the shirt.", "I patched the shirt.", "I bleached the shirt.", "cause", 1),
    ("The man's eye became infected.", "He went blind.", "He put on glasses.", "effect", 0),
    ("The café in Zürich ran out of croissants.", "Éric bought a baguette instead.", "The baker went on holiday.", "effect", 0),
    ("My friend said \"I'm leaving early\" ", "I asked her why.", "I painted the fence.", "effect", 0),
    ("The boy tripped on the stairs!", "He fell down.", "He ate an apple.", "effect", 0),
    ("I pulled the rubber band.", "It stretched.", "It flew across the room.", "effect", 0),
    ("The police aimed their weapons at the fugitive.", "The fugitive fell to the ground.", "The fugitive dropped his gun.", "effect", 1),
    ("Émile poured water on the sleeping fire.", "Ünder the ashes, the embers hissed.", "The fire grew bigger.", "effect", 0),
]

ARC_EASY = [  # id, stem, [(label, text)], answerKey
    ("Mercury_7179953", "Which of these is a renewable resource?", [("A", "coal"), ("B", "natural gas"), ("C", "wind"), ("D", "oil")], "C"),
    ("MCAS_2000_4_6", "Which of the following is a living thing?", [("A", "a rock"), ("B", "a tree"), ("C", "a cloud"), ("D", "the Sun")], "B"),
    ("Mercury_400807", "What is the boiling point of water at sea level?", [("1", "50 °C"), ("2", "100 °C"), ("3", "150 °C"), ("4", "212 °C")], "2"),
    ("NYSEDREGENTS_2015_4_7", "A student wants to measure the mass of a pencil. Which tool should the student use?", [("1", "a ruler"), ("2", "a balance"), ("3", "a thermometer"), ("4", "a graduated cylinder")], "2"),
    ("Mercury_SC_401169", "Which form of energy is produced when a rubber band vibrates?", [("A", "chemical"), ("B", "light"), ("C", "electrical"), ("D", "sound")], "D"),
    ("AKDE&ED_2012_8_12", "Plants make food through photosynthesis. What gas do plants take in?", [("A", "oxygen"), ("B", "carbon dioxide"), ("C", "nitrogen")], "B"),
    ("Mercury_7012758", "Why do astronauts feel \"weightless\" in orbit?", [("A", "There is no gravity in space."), ("B", "They are in free fall around Earth."), ("C", "Their suits cancel gravity."), ("D", "The Moon pulls them up."), ("E", "The air is too thin.")], "B"),
    ("TIMSS_2003_4_pg21", "Which animal is a mammal? ", [("A", "shark "), ("B", "dolphin"), ("C", "trout"), ("D", "octopus")], "B"),
    ("Mercury_SC_LBS10901", "Which property of a mineral can be determined just by looking at it?", [("A", "luster"), ("B", "mass"), ("C", "weight"), ("D", "hardness")], "A"),
    ("MDSA_2009_5_4", "Water freezes at 0°C — what happens to its volume when it freezes?", [("A", "It increases."), ("B", "It decreases."), ("C", "It stays the same.")], "A"),
    ("Mercury_7216738", "Sound travels fastest through which material?", [("A", "air"), ("B", "water"), ("C", "steel"), ("D", "a vacuum")], "C"),
    ("NCEOGA_2013_5_38", "Which is the closest star to Earth?", [("A", "Polaris"), ("B", "Sirius"), ("C", "the Sun"), ("D", "Alpha Centauri")], "C"),
]

ARC_CHALLENGE = [
    ("Mercury_SC_415702", "George wants to warm his hands quickly by rubbing them. Which skin surface will produce the most heat?", [("A", "dry palms"), ("B", "wet palms"), ("C", "palms covered with oil"), ("D", "palms covered with lotion")], "A"),
    ("MCAS_2009_5_6516", "Which of the following statements best explains why magnets usually stick to a refrigerator door?", [("A", "The refrigerator door is smooth."), ("B", "The refrigerator door contains iron."), ("C", "The refrigerator door is a good conductor."), ("D", "The refrigerator door has electric wires in it.")], "B"),
    ("Mercury_7233695", "A fold in rock layers where the layers bend downward is called a", [("1", "syncline."), ("2", "anticline."), ("3", "fault."), ("4", "joint.")], "1"),
    ("Mercury_7041615", "Which process in the water cycle is most directly caused by the Sun's energy?", [("A", "condensation"), ("B", "evaporation"), ("C", "precipitation"), ("D", "runoff")], "B"),
    ("Mercury_7138775", "Which of these is NOT a function of the skeletal system?", [("A", "support"), ("B", "protection of organs"), ("C", "production of blood cells"), ("D", "digestion of food"), ("E", "storage of minerals")], "D"),
    ("NYSEDREGENTS_2013_8_15", "Which statement describes a chemical change?", [("1", "Ice melts."), ("2", "Wood burns."), ("3", "Salt dissolves in water."), ("4", "Glass breaks.")], "2"),
    ("Mercury_SC_409171", "Students measured 2.5 cm of rain on Monday and 1.5 cm on Tuesday. What was the total rainfall?", [("A", "1.0 cm"), ("B", "3.5 cm"), ("C", "4.0 cm"), ("D", "4.5 cm")], "C"),
    ("Mercury_7094063", "In which layer of Earth’s atmosphere does most weather occur?", [("A", "troposphere"), ("B", "stratosphere"), ("C", "mesosphere")], "A"),
    ("ACTAAP_2014_7_8", "Which organelle is known as the cell's “powerhouse”?", [("A", "nucleus"), ("B", "ribosome"), ("C", "mitochondrion"), ("D", "vacuole")], "C"),
    ("Mercury_7100223", "An object's speed doubles. Its kinetic energy", [("A", "halves."), ("B", "doubles."), ("C", "triples."), ("D", "quadruples.")], "D"),
]

OPENBOOKQA = [  # id, stem, [(label, text)], answerKey
    ("7-980", "The sun is responsible for", [("A", "puppies learning new tricks"), ("B", "children growing up and getting old"), ("C", "flowers wilting in a vase"), ("D", "plants sprouting, blooming and wilting")], "D"),
    ("7-584", "When standing miles away from Mount Rushmore", [("A", "the mountains seem very close"), ("B", "the mountains are boring"), ("C", "the mountains look the same as from up close"), ("D", "the mountains seem smaller than in reality")], "D"),
    ("7-870", "When food is reduced in the stomach", [("A", "the mind needs time to digest"), ("B", "take a second to digest what I said"), ("C", "nutrients are being deconstructed"), ("D", "reader's digest is a body of works")], "C"),
    ("7-321", "Stars are", [("A", "warm lights that float"), ("B", "made out of nitrate"), ("C", "great balls of gas burning billions of miles away"), ("D", "lights in the sky")], "C"),
    ("9-732", "You can make a telescope with a", [("A", "straw"), ("B", "Glass"), ("C", "Candle"), ("D", "mailing tube")], "D"),
    ("9-1140", "Poison causes harm to which of the following?", [("A", "a Tree"), ("B", "a robot"), ("C", "a house"), ("D", "a car")], "A"),
    ("1577", "As a car approaches you in the night ", [("A", "the headlights become more intense"), ("B", "the headlights recede into the dark"), ("C", "the headlights remain at a constant"), ("D", "the headlights turn off")], " A"),
    ("8-376", "Which requires energy to move?", [("A", "weasel"), ("B", "willow"), ("C", "mango"), ("D", "poison ivy")], "A"),
    ("9-58", "An example of conservation is avoiding the use of", [("A", "gasoline"), ("B", "air"), ("C", "snow"), ("D", "clothes")], "A"),
    ("10-1022", "A “crème brûlée” torch heats sugar until it", [("A", "freezes"), ("B", "caramelizes"), ("C", "evaporates instantly"), ("D", "becomes salt")], "B"),
]

WINOGRANDE = [  # sentence, option1, option2, answer
    ("Sarah was a much better surgeon than Maria so _ always got the harder cases.", "Sarah", "Maria", "1"),
    ("Sarah was a much better surgeon than Maria so _ always got the easier cases.", "Sarah", "Maria", "2"),
    ("They were worried the wine would ruin the bed and the blanket, but the _ was't ruined.", "blanket", "bed", "2"),
    ("Terry tried to bake the eggplant in the toaster oven but the _ was too big.", "eggplant", "toaster", "1"),
    ("At night, Jeffrey always stays up later than Hunter to watch TV because _ wakes up late.", "Jeffrey", "Hunter", "1"),
    ("The trophy doesn't fit into the brown suitcase because the _ is too large.", "trophy", "suitcase", "1"),
    ("_ was the one who always forgot the keys, unlike Kevin, so Ian made copies.", "Ian", "Kevin", "1"),
    ("Zoë lent her bike to Chloé because _'s own bike had a flat tyre.", "Zoë", "Chloé", "2"),
    ("The cat chased the mouse across the kitchen until the _ hid under the fridge. ", "cat", "mouse", "2"),
    ("Natalie took basically all of her friend's money, so _ was in debt.", "Natalie", "the friend", "2"),
    ("José preferred tea over coffee because the _ always upset his stomach.", "tea", "coffee", "2"),
    ("The “free” sample was larger than the paid one, so people took the _", "sample", "paid one", "1"),
]

RTE = [  # premise, hypothesis, label (0 entailment)
    ("No Weapons of Mass Destruction Found in Iraq Yet.", "Weapons of Mass Destruction Found in Iraq.", 1),
    ("A place of sorrow, after Pope John Paul II died, became a place of celebration, as Roman Catholic faithful gathered in downtown Chicago to mark the installation of new Pope Benedict XVI.", "Pope Benedict XVI is the new leader of the Roman Catholic Church.", 0),
    ("Herceptin was already approved to treat the sickest breast cancer patients, and the company said, Monday, it will discuss with federal regulators the possibility of prescribing the drug for more breast cancer patients.", "Herceptin can be used to treat breast cancer.", 0),
    ("Judie Vivian, chief executive at ProMedica, a medical service company that helps sustain the 2-year-old Vietnam Heart Institute in Ho Chi Minh City (formerly Saigon), said that so far about 1,500 children have received treatment.", "The previous name of Ho Chi Minh City was Saigon.", 0),
    ("A man is due in court later charged with the murder 26 years ago of a teenager whose case was the first to be featured on BBC One's Crimewatch.", "A man is due in court for the murder of a teenager 26 years ago.", 0),
    ("The Eiffel Tower, completed in 1889, is 330 metres tall.", "The Eiffel Tower was built in the 20th century.", 1),
    ("Müller scored twice as Bayern beat Dortmund 3–1 in München on Saturday.", "Bayern lost to Dortmund.", 1),
    ("The company said profits rose 12% in the third quarter. ", "Profits fell in the third quarter.", 1),
    ("\"We will not negotiate,\" the minister told reporters in Brussels.", "The minister spoke to reporters.", 0),
    ("Oil prices fell more than $1 a barrel on Friday on concerns that Hurricane Ivan would do less damage than feared.", "Hurricane Ivan caused oil prices to rise.", 1),
    ("The café opened in 1998 and still serves the same crêpes today.", "The café has been open for more than two decades.", 0),
]

BOOLQ = [  # passage, question, label
    ("Persian (/ˈpɜːrʒən, -ʃən/), also known by its endonym Farsi (فارسی fārsi), is one of the Western Iranian languages within the Indo-Iranian branch of the Indo-European language family.", "do iran and afghanistan speak the same language", True),
    ("Good Samaritan laws offer legal protection to people who give reasonable assistance to those who are, or who they believe to be, injured, ill, in peril, or otherwise incapacitated.", "do good samaritan laws protect those who help at an accident", True),
    ("Windows Movie Maker (formerly known as Windows Live Movie Maker in Windows 7) is a discontinued video editing software by Microsoft.", "is windows movie maker part of windows essentials", True),
    ("Epsom salt is a chemical compound consisting of magnesium, sulfur and oxygen with the formula MgSO4. ", "is epsom salt the same as table salt", False),
    ("The Great Wall of China is not visible to the naked eye from low Earth orbit without aid, despite a popular myth.", "can you see the great wall of china from space", False),
    ("A barrel of crude oil holds 42 US gallons, or about 159 litres.", "is a barrel of oil 42 gallons", True),
    ("Tomatoes are botanically berries, but in 1893 the U.S. Supreme Court ruled in Nix v. Hedden that they should be taxed as vegetables.", "is a tomato a vegetable according to the supreme court", True),
    ("Mount Everest's summit is 8,848.86 m above sea level; Mauna Kea rises about 10,210 m from its base on the ocean floor.", "is mount everest the tallest mountain from base to peak", False),
    ("The \"Star-Spangled Banner\" became the national anthem of the United States by a congressional resolution in 1931.", "has the star spangled banner always been the national anthem", False),
    ("Bats are the only mammals capable of sustained flight; flying squirrels can only glide.", "can flying squirrels fly like bats", False),
    ("Zürich is the largest city in Switzerland, but the federal city (de facto capital) is Bern.", "is zürich the capital of switzerland", False),
]

LAMBADA = [
    "In my palm is a clear stone, and inside it is a small ivory statuette. A guardian angel. \"Figured if you're going to be out at night getting hit by cars, you might as well have some backup.\" I look at him, feeling stunned. Like this is some sort of sign. But as I stare at Harlin, his mouth curved in a confident grin, I don't care about signs",
    "Give me a minute to change and I'll meet you at the docks.\" She'd forced those words through her teeth. \"No need to change. We won't be that long.\" Shane gripped her arm and started leading her to the dock. \"I can make it there on my own, Shane",
    "\"Only one source I know of that would be likely to cough up enough money to finance a phony sleep research facility and pay people big bucks to solve crimes in their dreams,\" Farrell concluded dryly. \"What can I say?\" Ellis unfolded his arms and widened his hands. \"Your tax dollars at work.\" Before Farrell could respond, Leila's voice rose from inside the house. \"No insurance?\" she wailed. \"What do you mean you don't have any insurance",
    "The French chef, Amélie, tasted the sauce again and frowned. It needed more salt, more butter, more of everything. \"Patience,\" her mentor had always said, \"is the first ingredient.\" She lowered the flame and waited, stirring slowly. When she tasted it a third time, it was finally perfect. She smiled and reached for the",
    "He counted the coins twice: forty-two euros and thirty cents. Not enough for the train to München, not even close. He slid the coins back into his pocket and looked at the departure board. The last train left at 11:45. He would have to walk",
    "My grandmother kept every letter my grandfather ever wrote her. They filled three shoeboxes, tied with faded blue ribbon. After she died, my mother and I read them one by one, laughing and crying. In the last one, dated 1961, he promised he would always come home to her, and he always did come",
    "The lighthouse keeper climbed the 117 steps every evening. His knees ached, but the lamp had to be lit. Ships depended on it. That night the storm was the worst he had seen in years, and the wind howled through the cracks. Still, at exactly eight o'clock, he climbed the stairs and lit the",
    "\"Can you hear that?\" Mia whispered. Somewhere below the floorboards, something was scratching. Tom grabbed the flashlight and knelt down. Two tiny eyes glinted back at him. \"It's just a mouse,\" he said, laughing with relief. Mia wasn't laughing. She hated every kind of",
    "Over the summer, the children built a treehouse in the old oak behind the barn. They used planks from the broken fence, nails borrowed from their uncle, and a rope ladder they braided themselves. By August, it had a roof, a window and a sign that read \"No Grown-Ups Allowed.\" Their parents were never once allowed inside the",
    "Kenji checked his watch again. The interview was at nine, and it was already 8:52. He ran the last two blocks, burst through the revolving doors, and arrived at the reception desk breathless. \"I'm here for the interview,\" he said. The receptionist smiled. \"You're early, Mr. Tanaka. It's been moved to ten o'clock.\"",
]

HELLASWAG_JSONL = [  # activity_label, ctx_a, ctx_b, endings, label
    ("Removing ice from car", "Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles.", "then", [", the man adds wax to the windshield and cuts it.", ", a person board a ski lift, while two men supporting the head of the person wearing winter clothes snow as the we girls sled.", ", the man puts on a christmas coat, knitted with netting.", ", the man continues removing the snow on his car."], "3"),
    ("Baking cookies", "A female chef in white uniform shows a stack of baking pans in a large kitchen presenting them.", "the pans", ["contain egg yolks and baking soda.", "are then sprinkled with brown sugar.", "are placed in a strainer on the counter.", "are filled with pastries and loaded into the oven."], "3"),
    ("Home and Garden", "[header] How to clean a cast iron skillet [title] Scrub the skillet with hot water. [step] Use a stiff brush or a sponge.", "", [" Avoid soap if you can, since it strips the seasoning.", "[substeps] Soak the skillet in bleach overnight.", "Put the skillet in the dishwasher on the hottest cycle.", "Throw the skillet away and buy a new one. "], "0"),
    ("Playing guitar", "A man sits on a stool holding an acoustic guitar.", "HE STRUMS", ["a few chords and begins to sing.", "the guitar into the lake.", "a drum with his feet.", "a violin bow across the strings of a cello."], "0"),
    ("Personal Care and Style", "[header] How to braid your hair [title] Brush your hair until it is smooth. [title] Divide it into three equal sections.", "", ["[step] Cross the right section over the middle section, then the left over the new middle.", "[step] Cut the middle section off.", "[step] Dye each section a different colour.", "[step] Wash your hair with cold water."], "0"),
    ("Café barista", "A barista in Zürich steams milk in a metal pitcher.", "she", ["pours the milk into a cup in the shape of a heart.", "throws the pitcher at the customers.", "drinks the milk directly from the steamer wand.", "puts the pitcher in the freezer for an hour."], "0"),
    ("Shoveling snow", "A boy in a red jacket shovels snow from the driveway.", "his dog", ["jumps into the pile of snow he made.", "shovels snow next to him with a tiny shovel.", "drives the car out of the garage.", "begins to knit a sweater."], "0"),
    ("Finance and Business", "[header] How to make a budget [title] Write down your monthly income. [step] Include wages, tips and any side income.", " ", ["[title] List your monthly expenses.  [step] Include rent, food and transport.", "[title] Spend it all on the first day.", "[title] Ignore the bills until next month.", "[title] Borrow money from a stranger."], "0"),
    ("Rock climbing", "A woman chalks her hands at the bottom of a climbing wall.", "she then", ["climbs up the wall, reaching for colored holds.", "sits down and eats a sandwich.", "paints the wall blue.", "ties her shoes to the rope and leaves."], "0"),
    ("Making a sandwich", "A man places two slices of bread on a cutting board.", "he", ["spreads peanut butter on one slice and jelly on the other.", "puts the bread in the washing machine.", "throws the bread at the ceiling fan.", "uses the bread as a mouse pad."], "0"),
    # Python's capitalize() lower-cases a final capital sigma to "ς" (Unicode Final_Sigma).
    ("Sightseeing", "A tour guide in Athens points at a street sign.", "THE SIGN READS ΟΔΟΣ ΕΡΜΟΥ AND", ["the tourists take a photo of it.", "the sign flies away like a bird.", "the guide eats the sign.", "the street turns into a river."], "0"),
]


# ----------------------------------------------------------------------------------------------
# Writing the task files: ours (DESIGN §6 formats) and lm-eval's (the HF dataset schemas)

def write_jsonl(path: pathlib.Path, records) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def wikitext_pages(text: str) -> list[str]:
    """EleutherAI/wikitext_document_level's split of the line-level release: a line that, once
    "= = =" and "= =" are closed up and stripped, reads "= Title =" starts a page; a page is its
    lines joined by "\\n"; an all-white-space page before the first title is dropped."""
    pages, lines = [], []
    for line in text.split("\n"):
        closed = line.replace("= = =", "===").replace("= =", "==").strip()
        if closed.startswith("= ") and closed.endswith(" ="):
            page = "\n".join(lines)
            if page.strip():
                pages.append(page)
            lines = []
        lines.append(line)
    pages.append("\n".join(lines))
    return pages


class Case:
    """One task file format: what `shadowllm eval` reads and the lm-eval task that reads the same
    items. `base` is the builtin lm-eval YAML (relative to lm_eval/tasks) the generated task
    includes; `split` the split its data file is declared as. `known`: why this case differs
    from lm-eval on purpose (its differences are reported but do not fail the run)."""

    def __init__(self, name, task, data, base, lm_data, kind="mc", labels=None, split="validation",
                 extra=(), count=None, acc_norm=True, known=None):
        self.name, self.task, self.data, self.labels = name, task, data, labels
        self.base, self.lm_data, self.kind, self.split = base, lm_data, kind, split
        self.extra, self.count, self.acc_norm, self.known = list(extra), count, acc_norm, known

    @property
    def lm_task(self):
        return "diff_" + self.name.replace("-", "_")


def ai2_record(qid, stem, choices, key):
    return {"id": qid, "question": {"stem": stem, "choices": [{"text": t, "label": l} for l, t in choices]},
            "answerKey": key}


def hf_choices(choices):
    return {"text": [t for _, t in choices], "label": [l for l, _ in choices]}


def make_data(work: pathlib.Path, limit: int, pages: int) -> list[Case]:
    d, l = work / "data", work / "lmeval-data"
    cases = []

    # PIQA: the shared validation file as it is; lm-eval gets its first items with inline labels.
    piqa, piqa_labels = DATA / "piqa" / "valid.jsonl", DATA / "piqa" / "valid-labels.lst"
    rows = [json.loads(x) for x in piqa.read_text(encoding="utf-8").splitlines()[:limit]]
    golds = [int(x) for x in piqa_labels.read_text().split()[:limit]]
    write_jsonl(l / "piqa.jsonl", [{"goal": r["goal"], "sol1": r["sol1"], "sol2": r["sol2"], "label": g}
                                   for r, g in zip(rows, golds)])
    cases.append(Case("piqa", "piqa", piqa, "piqa/piqa.yaml", l / "piqa.jsonl", labels=piqa_labels))

    # HellaSwag, llama.cpp's 6-line text: its context line is "activity_label: ctx" after
    # lm-eval's preprocess; lm-eval gets it back as activity_label / ctx_a with an empty ctx_b
    # (preprocess strips the space that leaves), so only the endings' path is really exercised.
    # Ours reads it --as-stored: by default it restores the capital lm-eval gives ctx_b, which
    # this lm-eval input (ctx_b empty) cannot show; the jsonl case below checks that capital.
    hs = DATA / "hellaswag" / "hellaswag_val_full.txt"
    lines = hs.read_text(encoding="utf-8").split("\n")[:6 * limit]
    recs = []
    for i in range(0, len(lines), 6):
        label, _, ctx = lines[i].partition(": ")
        recs.append({"activity_label": label, "ctx_a": ctx, "ctx_b": "", "endings": lines[i + 2:i + 6],
                     "label": lines[i + 1].strip()})
    write_jsonl(l / "hellaswag_txt.jsonl", recs)
    cases.append(Case("hellaswag-txt", "hellaswag", hs, "hellaswag/hellaswag.yaml", l / "hellaswag_txt.jsonl",
                      extra=["--as-stored"]))
    # HellaSwag jsonl in the released schema: the same file for both sides.
    f = write_jsonl(d / "hellaswag" / "val.jsonl",
                    [{"ind": i, "activity_label": a, "ctx_a": ca, "ctx_b": cb, "ctx": (ca + " " + cb).strip(),
                      "endings": e, "label": g, "split": "val", "split_type": "indomain", "source_id": f"x~{i}"}
                     for i, (a, ca, cb, e, g) in enumerate(HELLASWAG_JSONL)])
    cases.append(Case("hellaswag-jsonl", "hellaswag", f, "hellaswag/hellaswag.yaml", f))

    # WikiText-2 test (tokenized release, as stored): the first `pages` articles.
    text = (DATA / "wikitext-2" / "test.txt").read_text(encoding="utf-8")
    first = wikitext_pages(text)[:pages]
    f = d / "wikitext" / "test.txt"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text("\n".join(first), encoding="utf-8")
    write_jsonl(l / "wikitext.jsonl", [{"page": p} for p in first])
    cases.append(Case("wikitext", "wikitext", f, "wikitext/wikitext.yaml", l / "wikitext.jsonl", kind="rolling",
                      split="test", extra=["--detokenize"], count=len(first)))

    # ARC: AI2's release for us, the HF schema for lm-eval.
    for name, items in (("arc_easy", ARC_EASY), ("arc_challenge", ARC_CHALLENGE)):
        f = write_jsonl(d / name / "dev.jsonl", [ai2_record(*x) for x in items])
        write_jsonl(l / f"{name}.jsonl", [{"id": q, "question": s, "choices": hf_choices(c), "answerKey": k}
                                          for q, s, c, k in items])
        cases.append(Case(name, name, f, f"arc/{name}.yaml", l / f"{name}.jsonl"))

    # Winogrande: the same jsonl for both sides.
    f = write_jsonl(d / "winogrande" / "dev.jsonl", [{"qID": f"w{i}", "sentence": s, "option1": a, "option2": b,
                                                      "answer": g} for i, (s, a, b, g) in enumerate(WINOGRANDE)])
    cases.append(Case("winogrande", "winogrande", f, "winogrande/default.yaml", f, acc_norm=False))

    # COPA: SuperGLUE jsonl (the same file for lm-eval) and the original XML.
    f = write_jsonl(d / "copa" / "val.jsonl", [{"premise": p, "choice1": a, "choice2": b, "question": q,
                                               "label": g, "idx": i} for i, (p, a, b, q, g) in enumerate(COPA)])
    copa_known = ("lm-eval 0.4's doc_to_choice starts a choice with a space and its target delimiter adds a second; "
                  "ours scores one space, as DESIGN §6 and lm-eval 0.3")
    cases.append(Case("copa-jsonl", "copa", f, "super_glue/copa/default.yaml", f, known=copa_known))
    from xml.sax.saxutils import escape, quoteattr
    xml = ['<?xml version="1.0" encoding="utf-8"?>', '<copa-corpus version="1.0">']
    for i, (p, a, b, q, g) in enumerate(COPA):
        xml += [f'<item id="{i + 1}" asks-for={quoteattr(q)} most-plausible-alternative="{g + 1}">',
                f"<p>{escape(p)}</p>", f"<a1>{escape(a)}</a1>", f"<a2>{escape(b)}</a2>", "</item>"]
    xml.append("</copa-corpus>")
    fx = d / "copa" / "copa-dev.xml"
    fx.write_text("\n".join(xml) + "\n", encoding="utf-8")
    cases.append(Case("copa-xml", "copa", fx, "super_glue/copa/default.yaml", f, known=copa_known))

    # BoolQ: SuperGLUE jsonl (label true/false) for us, HF's 0/1 labels for lm-eval.
    f = write_jsonl(d / "boolq" / "val.jsonl", [{"question": q, "passage": p, "idx": i, "label": g}
                                                for i, (p, q, g) in enumerate(BOOLQ)])
    write_jsonl(l / "boolq.jsonl", [{"question": q, "passage": p, "idx": i, "label": int(g)}
                                    for i, (p, q, g) in enumerate(BOOLQ)])
    cases.append(Case("boolq", "boolq", f, "super_glue/boolq/default.yaml", l / "boolq.jsonl"))

    # RTE: SuperGLUE jsonl (string labels) -> lm-eval's sglue_rte; GLUE tsv -> lm-eval's glue rte.
    names = ["entailment", "not_entailment"]
    f = write_jsonl(d / "rte" / "val.jsonl", [{"premise": p, "hypothesis": h, "label": names[g], "idx": i}
                                              for i, (p, h, g) in enumerate(RTE)])
    write_jsonl(l / "rte_sglue.jsonl", [{"premise": p, "hypothesis": h, "label": g, "idx": i}
                                        for i, (p, h, g) in enumerate(RTE)])
    cases.append(Case("rte-jsonl", "rte", f, "super_glue/rte/default.yaml", l / "rte_sglue.jsonl"))
    ft = d / "rte" / "dev.tsv"
    ft.write_text("index\tsentence1\tsentence2\tlabel\n" + "".join(
        f"{i}\t{p}\t{h}\t{names[g]}\n" for i, (p, h, g) in enumerate(RTE)), encoding="utf-8")
    write_jsonl(l / "rte_glue.jsonl", [{"sentence1": p, "sentence2": h, "label": g, "idx": i}
                                       for i, (p, h, g) in enumerate(RTE)])
    cases.append(Case("rte-tsv", "rte", ft, "glue/rte/default.yaml", l / "rte_glue.jsonl"))

    # OpenBookQA: AI2's release and the older lm-eval `query, choices, gold` form for us.
    f = write_jsonl(d / "openbookqa" / "dev.jsonl", [ai2_record(*x) for x in OPENBOOKQA])
    write_jsonl(l / "openbookqa.jsonl", [{"id": q, "question_stem": s, "choices": hf_choices(c), "answerKey": k}
                                         for q, s, c, k in OPENBOOKQA])
    cases.append(Case("openbookqa-ai2", "openbookqa", f, "openbookqa/openbookqa.yaml", l / "openbookqa.jsonl"))
    fq = write_jsonl(d / "openbookqa" / "dev-query.jsonl",
                     [{"id": q, "query": s, "choices": [t for _, t in c],
                       "gold": [x for x, _ in c].index(k.strip())} for q, s, c, k in OPENBOOKQA])
    cases.append(Case("openbookqa-query", "openbookqa", fq, "openbookqa/openbookqa.yaml", l / "openbookqa.jsonl"))

    # LAMBADA: OpenAI's jsonl (the same file for lm-eval's lambada_openai) and the plain text.
    f = write_jsonl(d / "lambada" / "lambada_test.jsonl", [{"text": t} for t in LAMBADA])
    cases.append(Case("lambada-jsonl", "lambada", f, "lambada/lambada_openai.yaml", f, kind="lambada", split="test"))
    ft = d / "lambada" / "lambada_test_plain_text.txt"
    ft.write_text("".join(t + "\n" for t in LAMBADA), encoding="utf-8")
    cases.append(Case("lambada-txt", "lambada", ft, "lambada/lambada_openai.yaml", f, kind="lambada", split="test"))

    for c in cases:
        if c.count is None:
            c.count = min(limit, sum(1 for _ in open(c.lm_data, encoding="utf-8")))
    return cases


# ----------------------------------------------------------------------------------------------
# Running lm-eval

def lm_tasks_dir():
    import lm_eval.tasks
    return pathlib.Path(lm_eval.tasks.__file__).parent


def lm_task_names(cases: list[Case]) -> dict:
    """One lm-eval task per (builtin config, data file): COPA's jsonl and XML share one, etc."""
    names = {}
    for c in cases:
        key = (c.base, str(c.lm_data))
        if key not in names:
            names[key] = "diff_" + re.sub(r"\W", "_", c.name)
    return names


def write_task_yamls(cases: list[Case], names: dict, out: pathlib.Path) -> None:
    """Each task includes the builtin config (its doc_to_text / doc_to_choice / process_docs stay
    lm-eval's) and only swaps the dataset for a local jsonl. acc_norm is added to the metric list
    of the tasks whose builtin config lists acc only (COPA, BoolQ, RTE): it is lm-eval's own
    per-character rule; Winogrande keeps acc only (its choices are contexts)."""
    out.mkdir(parents=True, exist_ok=True)
    for f in out.glob("*.yaml"):
        f.unlink()
    base_dir = lm_tasks_dir()
    done = set()
    for c in cases:
        key = (c.base, str(c.lm_data))
        if key in done:
            continue
        done.add(key)
        lines = [f"include: {json.dumps(str(base_dir / c.base))}", f"task: {names[key]}", "tag: []",
                 "dataset_path: json", "dataset_name: null",
                 "dataset_kwargs:", "  data_files:", f"    {c.split}: {json.dumps(str(c.lm_data))}",
                 "training_split: null", "fewshot_split: null",
                 f"validation_split: {'validation' if c.split == 'validation' else 'null'}",
                 f"test_split: {'test' if c.split == 'test' else 'null'}"]
        if c.kind == "mc":
            metrics = ["acc", "acc_norm"] if c.acc_norm else ["acc"]
            lines.append("metric_list:")
            for m in metrics:
                lines += [f"  - metric: {m}", "    aggregation: mean", "    higher_is_better: true"]
        (out / f"{names[key]}.yaml").write_text("\n".join(lines) + "\n")


def run_lmeval(cases: list[Case], work: pathlib.Path, model_dir: pathlib.Path, max_length: int, threads: int) -> dict:
    """Runs every task in one lm-eval call (one model load); returns {"tasks": {task: {"results",
    "samples"}}, "seconds", "versions"} (main() merges it into WORK/lmeval-output.json)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")        # local files only
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import lm_eval
    import torch
    from lm_eval.tasks import TaskManager

    torch.set_num_threads(threads)
    names = lm_task_names(cases)
    yaml_dir = work / "lmeval-tasks"
    write_task_yamls(cases, names, yaml_dir)
    tasks = sorted(set(names.values()))
    t0 = time.time()
    out = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={model_dir},dtype=float32,max_length={max_length}",
        tasks=tasks, num_fewshot=0, log_samples=True, device="cpu", batch_size=1,
        task_manager=TaskManager(include_path=str(yaml_dir)), random_seed=0, numpy_random_seed=0,
        torch_random_seed=0, fewshot_random_seed=0)
    seconds = time.time() - t0
    result = {"seconds": seconds, "versions": out.get("versions", {}), "tasks": {}}
    for t in tasks:
        samples = sorted(out["samples"][t], key=lambda s: s["doc_id"])
        result["tasks"][t] = {"results": out["results"][t], "samples": [clean_sample(s) for s in samples]}
    return result


def clean_sample(s: dict) -> dict:
    """The parts of an lm-eval sample the comparison reads: doc, (context, continuation) pairs,
    the filtered responses and the per-item metric values."""
    args = s["arguments"]
    if isinstance(args, dict):          # {"gen_args_0": {"arg_0": ctx, "arg_1": cont}, ...}
        args = [[v[k] for k in sorted(v)] for _, v in sorted(args.items(), key=lambda kv: int(kv[0].rsplit("_", 1)[1]))]
    keep = {k: v for k, v in s.items() if k in ("acc", "acc_norm", "perplexity", "word_perplexity",
                                                 "byte_perplexity", "bits_per_byte")}
    return {"doc_id": s["doc_id"], "doc": s["doc"], "arguments": args, "resps": s["filtered_resps"], **keep}


# ----------------------------------------------------------------------------------------------
# Running shadowllm

def run_ours(c: Case, work: pathlib.Path, cli: pathlib.Path, model_dir: pathlib.Path, max_length: int,
             threads: int) -> dict:
    out = work / "ours" / f"{c.name}.samples.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(cli), "eval", "--model", str(model_dir), "--weights", "f32", "--task", c.task, "--data", str(c.data),
           "--threads", str(threads), "--json", "--no-progress", "--samples", str(out)] + c.extra
    if c.kind != "rolling":                 # WikiText scores the whole file: it holds the chosen articles
        cmd += ["--limit", str(c.count)]
    if c.labels:
        cmd += ["--labels", str(c.labels)]
    if c.kind == "rolling":
        cmd += ["--context", str(max_length)]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return {"error": (p.stderr or p.stdout).strip(), "command": cmd}
    samples = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines() if x.strip()]
    return {"report": json.loads(p.stdout), "samples": samples, "seconds": time.time() - t0, "command": cmd}


# ----------------------------------------------------------------------------------------------
# Comparison

def first_difference(a: str, b: str) -> str:
    i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
    lo = max(0, i - 20)
    return f"at char {i}: lm-eval {a[lo:i + 20]!r} vs ours {b[lo:i + 20]!r}"


def as_ll(resp):
    """A filtered response: (ll, is_greedy) for loglikelihood requests, ll for rolling ones."""
    if isinstance(resp, (list, tuple)):
        return float(resp[0]), (bool(resp[1]) if len(resp) > 1 else None)
    return float(resp), None


def compare_case(c: Case, lm: dict, ours: dict, tol: float) -> dict:
    row = {"case": c.name, "task": c.task, "file": c.data.name, "known": c.known, "items": 0, "max_abs_dll": 0.0,
           "string_mismatches": 0, "decision_mismatches": 0, "ll_mismatches": 0, "examples": [], "metrics": {}}
    if "error" in ours:
        row["error"] = ours["error"]
        return row
    lms, oss = lm["samples"], {s["doc_id"]: s for s in ours["samples"]}
    res = lm["results"]

    def example(kind, doc_id, text):
        if sum(1 for e in row["examples"] if e["kind"] == kind) < 3:
            row["examples"].append({"kind": kind, "doc_id": doc_id, "detail": text})

    signed = []             # ours - lm-eval, per log-likelihood
    for s in lms:
        o = oss.get(s["doc_id"])
        if o is None:
            example("missing", s["doc_id"], "no line in our --samples")
            continue
        row["items"] += 1
        if c.kind == "mc":
            pairs = [(a[0], a[1]) for a in s["arguments"]]
            for i, (ctx, cont) in enumerate(pairs):
                if ctx != o["contexts"][i]:
                    row["string_mismatches"] += 1
                    example("context", s["doc_id"], f"choice {i} " + first_difference(ctx, o["contexts"][i]))
                if cont != o["continuations"][i]:
                    row["string_mismatches"] += 1
                    example("continuation", s["doc_id"], f"choice {i}: lm-eval {cont!r} vs ours {o['continuations'][i]!r}")
            lls = [as_ll(r)[0] for r in s["resps"]]
            signed += [b - a for a, b in zip(lls, o["loglikelihoods"])]
            d = max(abs(a - b) for a, b in zip(lls, o["loglikelihoods"]))
            row["max_abs_dll"] = max(row["max_abs_dll"], d)
            if any(abs(a - b) > tol + REL_TOL * abs(a) for a, b in zip(lls, o["loglikelihoods"])):
                row["ll_mismatches"] += 1
                example("loglikelihood", s["doc_id"], f"lm-eval {lls} vs ours {o['loglikelihoods']}")
            for m in ("acc", "acc_norm"):
                if m in s and bool(s[m]) != bool(o[m]):
                    row["decision_mismatches"] += 1
                    example(m, s["doc_id"], f"{m}: lm-eval {s[m]} vs ours {o[m]} (lls lm-eval {lls}, ours "
                                             f"{o['loglikelihoods']}, choices {[p[1] for p in pairs]})")
        elif c.kind == "lambada":
            ctx, cont = s["arguments"][0][0], s["arguments"][0][1]
            if ctx != o["context"]:
                row["string_mismatches"] += 1
                example("context", s["doc_id"], first_difference(ctx, o["context"]))
            if cont != o["continuation"]:
                row["string_mismatches"] += 1
                example("continuation", s["doc_id"], f"lm-eval {cont!r} vs ours {o['continuation']!r}")
            ll, greedy = as_ll(s["resps"][0])
            signed.append(o["loglikelihood"] - ll)
            d = abs(ll - o["loglikelihood"])
            row["max_abs_dll"] = max(row["max_abs_dll"], d)
            if d > tol + REL_TOL * abs(ll):
                row["ll_mismatches"] += 1
                example("loglikelihood", s["doc_id"], f"lm-eval {ll} vs ours {o['loglikelihood']}")
            if greedy != o["greedy"]:
                row["decision_mismatches"] += 1
                example("greedy", s["doc_id"], f"is_greedy: lm-eval {greedy} vs ours {o['greedy']} (target {cont!r})")
        else:  # rolling
            page = s["doc"]["page"]
            ll, _ = as_ll(s["resps"][0])
            signed.append(o["loglikelihood"] - ll)
            d = abs(ll - o["loglikelihood"])
            row["max_abs_dll"] = max(row["max_abs_dll"], d)
            row.setdefault("relative_dll", 0.0)
            row["relative_dll"] = max(row["relative_dll"], d / abs(ll))
            if d > tol + REL_TOL * abs(ll):
                row["ll_mismatches"] += 1
                example("loglikelihood", s["doc_id"], f"lm-eval {ll} vs ours {o['loglikelihood']}")
            words, nbytes = len(re.split(r"\s+", page)), len(page.encode("utf-8"))
            if (words, nbytes) != (o["words"], o["bytes"]):
                row["string_mismatches"] += 1
                example("page", s["doc_id"], f"words/bytes lm-eval {words}/{nbytes} vs ours {o['words']}/{o['bytes']}")
            row.setdefault("pages", []).append({"doc_id": s["doc_id"], "lm_eval_ll": ll, "ours_ll": o["loglikelihood"],
                                                "words": words, "bytes": nbytes, "tokens": o["tokens"]})
    if signed:
        row["mean_dll"] = sum(signed) / len(signed)
        row["positive_dll"] = sum(1 for x in signed if x > 0) / len(signed)
    # Aggregates as each side reports them.
    om = ours["report"].get("metrics") or ours["report"]
    for m in ("acc", "acc_norm", "perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte"):
        if f"{m},none" in res or m in om:
            row["metrics"][m] = (res.get(f"{m},none"), om.get(m))
    return row


def fmt(x, digits=4):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.1e}"
    return str(x)


def report_markdown(rows: list[dict], meta: dict) -> str:
    out = ["# shadowllm eval vs lm-evaluation-harness, item by item", "",
           f"lm-eval {meta.get('lm_eval')}, transformers {meta.get('transformers')}, torch {meta.get('torch')}; "
           f"model {meta.get('model')} (float32 on both sides); shadowllm {meta.get('cli')}; "
           f"tolerance {meta.get('tol')} absolute + {REL_TOL} relative on summed log-likelihoods.", "",
           "| task | file | items | max \\|Δ ll\\| | mean Δ ll (ours − lm-eval) | ll beyond tolerance | string mismatches | decision mismatches | acc lm-eval / ours | acc_norm lm-eval / ours |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['case']} | {r['file']} | – | – | – | – | – | – | shadowllm failed: {r['error'][:120]} | |")
            continue
        m = r["metrics"]
        accs = " / ".join(fmt(v) for v in m.get("acc", (None, None)))
        norms = " / ".join(fmt(v) for v in m.get("acc_norm", (None, None)))
        if r["task"] == "wikitext":
            accs = "word ppl " + " / ".join(fmt(v, 7) for v in m.get("word_perplexity", (None, None)))
            norms = "bits/byte " + " / ".join(fmt(v, 7) for v in m.get("bits_per_byte", (None, None)))
        if r["task"] == "lambada":
            norms = "ppl " + " / ".join(fmt(v, 6) for v in m.get("perplexity", (None, None)))
        out.append(f"| {r['case']} | {r['file']} | {r['items']} | {fmt(r['max_abs_dll'])} | {r.get('mean_dll', 0):+.1e} | "
                   f"{r['ll_mismatches']} | {r['string_mismatches']} | "
                   f"{r['decision_mismatches']} | {accs} | {norms} |")
    out += ["", "## Differences", ""]
    any_diff = False
    for r in rows:
        if r["examples"] and r.get("known"):
            out.append(f"- **{r['case']}**, a known difference (does not fail the run): {r['known']}")
        for e in r["examples"]:
            any_diff = True
            out.append(f"- **{r['case']}** doc {e['doc_id']} ({e['kind']}): {e['detail']}")
    if not any_diff:
        out.append("None.")
    for r in rows:
        if r.get("pages"):
            out += ["", f"## {r['case']}: per article", "", "| doc | lm-eval ll | ours ll | Δ | words | bytes | tokens |",
                    "|---|---|---|---|---|---|---|"]
            for p in r["pages"]:
                out.append(f"| {p['doc_id']} | {p['lm_eval_ll']:.4f} | {p['ours_ll']:.4f} | "
                           f"{p['ours_ll'] - p['lm_eval_ll']:.2e} | {p['words']} | {p['bytes']} | {p['tokens']} |")
    return "\n".join(out) + "\n"


def failed(r: dict) -> bool:
    """A case that differs, unless it differs on purpose (`Case.known`); an error always fails."""
    differs = r["string_mismatches"] or r["decision_mismatches"] or r["ll_mismatches"]
    return "error" in r or bool(differs and not r.get("known"))


# ----------------------------------------------------------------------------------------------
# Main

def check_one_text(model_dir: pathlib.Path, cli: pathlib.Path) -> None:
    """transformers and shadowllm on the same directory: one short text's summed log-likelihood."""
    import torch
    import transformers
    text = "The quick brown fox jumps over the lazy dog. Café naïve, 1234 items — “quoted”."
    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    ids = tok(text, add_special_tokens=False).input_ids
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    ref = sum(lp[i - 1, ids[i]].item() for i in range(1, len(ids)))
    p = subprocess.run([str(cli), "perplexity", "--model", str(model_dir), "--weights", "f32", "--text", text,
                        "--json", "--no-progress"], capture_output=True, text=True, check=True)
    got = json.loads(p.stdout)
    assert got["tokens"] == len(ids), (got["tokens"], len(ids))
    rel = abs(-got["nll_sum"] - ref) / abs(ref)
    print(f"one text, {len(ids)} tokens: transformers ll {ref:.6f}, shadowllm {-got['nll_sum']:.6f} (relative {rel:.1e})")
    assert rel < 1e-4, "the two sides do not run the same model"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", nargs="?", default="all", choices=["all", "convert", "data", "run"])
    ap.add_argument("--work", type=pathlib.Path, default=pathlib.Path("/tmp/lmeval-diff"))
    ap.add_argument("--gguf", type=pathlib.Path, default=DEFAULT_GGUF)
    ap.add_argument("--cli", type=pathlib.Path, default=DEFAULT_CLI)
    ap.add_argument("--tasks", help="comma-separated case names or task names (default: all)")
    ap.add_argument("--limit", type=int, default=20, help="items per task from the shared PIQA/HellaSwag files")
    ap.add_argument("--pages", type=int, default=3, help="WikiText articles")
    ap.add_argument("--max-length", type=int, default=2048, help="lm-eval max_length = shadowllm --context")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for torch and shadowllm (1: a shared 2-core machine makes torch's 2-thread "
                         "MKL up to 10x slower)")
    ap.add_argument("--reuse-lmeval", action="store_true",
                    help="take lm-eval's results from WORK/lmeval-output.json; run lm-eval only for tasks it lacks")
    args = ap.parse_args()
    work, model_dir = args.work, args.work / "smollm2-hf"
    work.mkdir(parents=True, exist_ok=True)

    if args.step in ("all", "convert"):
        if not (model_dir / "model.safetensors").exists():
            convert(args.gguf, model_dir)
        check_one_text(model_dir, args.cli)
    if args.step == "convert":
        return 0
    cases = make_data(work, args.limit, args.pages)
    if args.tasks:
        wanted = set(args.tasks.split(","))
        cases = [c for c in cases if c.name in wanted or c.task in wanted]
    if args.step == "data":
        for c in cases:
            print(f"{c.name:18} ours {c.data}  lm-eval {c.lm_data}")
        return 0

    names = lm_task_names(cases)
    cache = work / "lmeval-output.json"
    lm = json.loads(cache.read_text()) if cache.exists() else {"tasks": {}}
    todo = cases if not args.reuse_lmeval else [
        c for c in cases if names[(c.base, str(c.lm_data))] not in lm["tasks"]]
    if todo:
        fresh = run_lmeval(todo, work, model_dir, args.max_length, args.threads)
        print(f"lm-eval: {fresh['seconds']:.0f} s for {len(fresh['tasks'])} tasks")
        lm["tasks"].update(fresh["tasks"])
        lm["versions"], lm["seconds"] = fresh["versions"], fresh["seconds"]
        cache.write_text(json.dumps(lm, indent=1, ensure_ascii=False, default=str))
    rows = []
    for c in cases:
        ours = run_ours(c, work, args.cli, model_dir, args.max_length, args.threads)
        print(f"shadowllm {c.name}: {ours.get('seconds', 0):.0f} s" + (f"  ERROR {ours['error']}" if "error" in ours else ""))
        rows.append(compare_case(c, lm["tasks"][names[(c.base, str(c.lm_data))]], ours, args.tol))
    import lm_eval
    import torch
    import transformers
    meta = {"lm_eval": getattr(lm_eval, "__version__", "?"), "transformers": transformers.__version__,
            "torch": torch.__version__, "model": args.gguf.name, "cli": str(args.cli), "tol": args.tol}
    md = report_markdown(rows, meta)
    (work / "report.md").write_text(md)
    (work / "report.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, ensure_ascii=False))
    print(md)
    print(f"wrote {work / 'report.md'} and {work / 'report.json'}")
    return 1 if any(failed(r) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
