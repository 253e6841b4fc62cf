"""mcts's rounds: W simulations whose new chains are asked in one yield (`parallel=W`).

Tree parallelization with a virtual loss, the standard way to run MCTS simulations at once
(Chaslot, Winands, van den Herik 2008, "Parallel Monte-Carlo Tree Search"). One round, with
W' = min(W, the budget left):

    until W' chains are pending, or the simulations (`max_simulations`) run out, or the
    tree has nothing left (deep: root.done), or W' selections of this round landed on a
    chain already pending in it:
        select a node as one simulation of the mode does (expanding the tree as it does);
        this counts one simulation
        - its chain was evaluated in an earlier round: its outcome is told at once, from the
          ledger, and the early stop checked (a memoized re-read: free, as with W = 1);
        - its chain is new: it is pending, with a virtual loss on its path;
        - its chain is already pending in this round (reached along another path, or the
          same node again): not asked again; a virtual loss on its path too, and told
          after the round with the pending chain's outcome, like a re-read.
    ask the pending chains in one yield (`ledger.ask_many`), in selection order;
    take every virtual loss back, then tell each selection its real outcome (back it up),
    in selection order;
    check the early stop on the pending chains in selection order: a hit ends the search
    (the round's other chains are spent all the same; the result is base.py's rules over
    every chain evaluated).

The virtual loss: a selection adds one visit with reward 0 to each node from the selected
one up to the root (`visits += 1`; `wins` and `best` unchanged), so the mean reward W/n
along that path falls and later selections of the round go elsewhere; taking it back is
`visits -= 1` on the same nodes (integers: exact). In mode deep, where Q is the best reward
in a subtree (a loss leaves it), it acts through the widening (a node's width grows with
its visits, so a node being explored admits one more child) and a node's untried moves,
which lose a move as soon as it is expanded.

So a round never asks more than the budget left, never a chain twice (the ledger's memo and
the pending set), and at most W chains. W = 1 is the serial loop exactly: one selection at a
time, re-reads told as they come, one chain asked, its loss taken back before its backup.
"""

from collections.abc import Callable

from lm_eval_cola.search.searchers.base import Asks, Chain, Ledger, Outcome
from lm_eval_cola.search.searchers.mcts_deep import Node


def add_virtual_loss(node: Node | None) -> None:
    while node is not None:
        node.visits += 1
        node = node.parent


def take_virtual_loss(node: Node | None) -> None:
    while node is not None:
        node.visits -= 1
        node = node.parent


def run_rounds(
    ledger: Ledger,
    root: Node,
    width: int,
    max_simulations: int,
    select: Callable[[], Node],
    tell: Callable[[Node, Outcome], None],
    stops: Callable[[Node, Outcome], bool],
) -> Asks[bool]:
    """`stopped = yield from run_rounds(...)`: simulate in rounds of up to `width` new
    chains (module docstring) until the budget, the simulations or the tree run out
    (False) or `stops(node, outcome)` says the early stop is hit (True). `select()` makes
    one simulation's selection (it may expand the tree); `tell(node, outcome)` backs a
    selected node's outcome up."""
    simulations = 0
    while simulations < max_simulations and ledger.remaining > 0 and not root.done:
        room = min(width, ledger.remaining)
        pending: list[Node] = []  # the new chains' nodes, selection order
        pending_chains: set[Chain] = set()
        held: list[Node] = []  # every selection holding a virtual loss, selection order
        repeats = 0
        while (len(pending) < room and repeats < room and simulations < max_simulations
               and not root.done):
            node = select()
            simulations += 1
            known = ledger.seen.get(node.chain)
            if known is not None:
                tell(node, known)
                if stops(node, known):
                    return True
                continue
            if node.chain in pending_chains:
                repeats += 1
            else:
                pending.append(node)
                pending_chains.add(node.chain)
            add_virtual_loss(node)
            held.append(node)
        if not pending:
            break  # the simulations or the tree ran out
        yield from ledger.ask_many([node.chain for node in pending])
        for node in held:
            take_virtual_loss(node)
        for node in held:
            tell(node, ledger.seen[node.chain])
        if any(stops(node, ledger.seen[node.chain]) for node in pending):
            return True
    return False
