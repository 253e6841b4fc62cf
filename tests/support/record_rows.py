"""One record as a records file holds it (a JSON object a line), for tests that write
records files by hand; each test adds or changes the fields it is about."""

RECORD = {
    "task": "arc_challenge", "doc_id": 0, "doc_hash": "h", "searcher": "mcts", "settings": {},
    "seed": 1, "full_correct": True, "best_chain": "0-3", "best_length": 4,
    "best_correct": True, "num_layers": 4, "evaluations": 1, "seconds": 0.1,
    "responses": [[-1.0, True]],
}
