"""The hotwired profile: the fleet as the incidents found the original system, assembled here
from stand-in parts so that production code carries no switch that turns a defence off.

- `control`: an instant global push. Every node polls one pointer; a push moves all of them at
  once. No canary, no waves, no gate, no signature.
- `node`: a proxy that swaps to whatever it is handed (no validation against its own
  capacities, no last-known-good, no quarantine) and runs its modules with no bulkhead: an
  exception in a module fails the request with a 500, and every one is reported in full.
- `parts`: the stand-in modules: a bot module that writes features into a preallocated table
  and raises past its capacity, and the pre-fix killswitch that skips a rule's initialisation
  but not its use.
"""
