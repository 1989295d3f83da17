"""The package's structure: layers that only import downwards, no import circle, and one door
for writes of a job's state.

Both tests read the source (``ast``), so an import inside a function counts as much as one at
the top of a module.
"""

import ast
import re
from pathlib import Path

from django.test import SimpleTestCase

PACKAGE = Path(__file__).resolve().parent.parent / "django_jobs"

#: The layers, bottom-up. A module may import its own layer and the ones below, never one
#: above. Names are module paths below ``django_jobs`` (a package stands for its modules).
LAYERS = [
    ("leaves", ["conf", "exceptions", "signals", "jsonutil", "durations", "modes", "crontab",
                "results"]),
    ("models", ["models", "migrations"]),
    # SQL primitives: nothing about job features, signals, the runtime or plugins.
    ("engines", ["engines"]),
    ("building jobs", ["unique", "registry", "features", "build"]),
    ("the state door", ["outcome", "transitions"]),
    ("running one job", ["execution"]),
    ("inserting", ["insertion", "updates", "worker"]),
    ("job features and plugins", ["pro", "plugins"]),
    ("runtime", ["runtime"]),
    # The contract suite (django_jobs.contract) tests everything below it.
    ("surfaces", ["control", "testing", "contract", "pytest_plugin", "admin", "management",
                  "checks", "tasks", "apps", "__init__"]),
]

#: The only imports allowed inside functions, each with the reason it cannot be at the top.
LOCAL_IMPORTS = {
    # psycopg is optional: a SQLite-only install never imports the PostgreSQL notifier.
    ("runtime.node", "runtime.notifier"),
    # apps.py is imported before the models are ready.
    ("apps", "checks"), ("apps", "conf"), ("apps", "plugins"), ("apps", "pro"),
    # A job process sets Django up before it imports anything that needs the models.
    ("runtime.child", "execution.executor"), ("runtime.child", "execution.interrupt"),
    ("runtime.child", "runtime.wire"),
    # pytest loads its plugins before Django is set up.
    ("pytest_plugin", "testing"), ("pytest_plugin", "__init__"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def resolve(module: str, is_package: bool, node: ast.ImportFrom | ast.Import,
            modules: dict[str, Path]) -> list[str]:
    """The package modules an import statement of ``module`` loads."""
    targets = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name == "django_jobs" or alias.name.startswith("django_jobs."):
                targets.append(alias.name.removeprefix("django_jobs").lstrip(".") or "__init__")
        return [t for t in targets if t in modules]
    if node.level == 0:
        if node.module != "django_jobs" and not (node.module or "").startswith("django_jobs."):
            return []
        base = node.module.removeprefix("django_jobs").lstrip(".")
    else:
        here = module.split(".") if module != "__init__" else []
        if not is_package:
            here = here[:-1]
        up = node.level - 1
        here = here[:len(here) - up] if up else here
        base = ".".join([*here, *([node.module] if node.module else [])])
    for alias in node.names:
        sub = f"{base}.{alias.name}" if base else alias.name
        if sub in modules:
            targets.append(sub)
        else:
            targets.append(base or "__init__")
    return [t for t in targets if t in modules]


def import_edges() -> list[tuple[str, str, int, bool]]:
    """(importer, imported, line, inside a function) for every import of the package."""
    modules = package_modules()
    edges = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        local = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                local.update(id(sub) for sub in ast.walk(node)
                             if isinstance(sub, (ast.Import, ast.ImportFrom)))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in resolve(module, path.name == "__init__.py", node, modules):
                    if target != module:
                        edges.append((module, target, node.lineno, id(node) in local))
    return edges


def layer_of(module: str) -> int:
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            if module == name or module.startswith(name + "."):
                return index
    raise AssertionError(f"module django_jobs.{module} is in no layer: add it to LAYERS")


def cycles(edges) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for source, target, *_ in edges:
        graph.setdefault(source, set()).add(target)
        graph.setdefault(target, set())
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


class LayerTests(SimpleTestCase):
    def test_every_module_is_in_a_layer(self):
        for module in package_modules():
            layer_of(module)

    def test_no_import_from_a_lower_layer_into_a_higher_one(self):
        upward = [f"django_jobs.{source}:{line} imports django_jobs.{target} "
                  f"({LAYERS[layer_of(source)][0]} -> {LAYERS[layer_of(target)][0]})"
                  for source, target, line, _ in import_edges()
                  if layer_of(target) > layer_of(source)]
        self.assertEqual(upward, [])

    def test_no_import_circle(self):
        self.assertEqual(cycles(import_edges()), [])

    def test_imports_inside_functions_only_where_they_must_be(self):
        local = sorted({(source, target) for source, target, _, inside in import_edges()
                        if inside} - LOCAL_IMPORTS)
        self.assertEqual(local, [])

    def test_the_walk_sees_imports_inside_functions(self):
        edges = {(s, t, inside) for s, t, _, inside in import_edges()}
        self.assertIn(("runtime.node", "runtime.notifier", True), edges)
        self.assertIn(("worker", "insertion", False), edges)

    def test_the_checks_catch_a_cycle(self):
        self.assertEqual(cycles([("a", "b", 1, False), ("b", "c", 1, True),
                                 ("c", "a", 1, False)]), [["a", "b", "c"]])


# -- one door for state writes ------------------------------------------------------------------

#: Where a job's ``state`` column may be written: the door (``transitions.transition``, whose
#: columns ``state_columns`` builds, and the engine statements it runs) and the fetch
#: statements; and the contract suite's set-up, which puts rows in a starting state as given
#: (the door would set and clear columns the test sets) before checking the engine.
STATE_WRITERS = {
    ("transitions", "state_columns"),
    ("contract.support", "put"),
    ("engines.postgresql", "PostgreSQLEngine.update_each"),
    ("engines.postgresql", "PostgreSQLEngine.fetch_statement"),
    ("engines.sqlite", "SQLiteEngine.fetch_statement"),
}
_SQL_STATE_WRITE = re.compile(r"(?is)\bupdate\b.*\bset\b.*\bstate\s*=|\bset\s+state\s*=")


def state_writes(source: str) -> list[tuple[str, int]]:
    """(function, line) of each write of ``state`` to the database in ``source``: an
    ``update``/``bulk_update``/``update_or_create`` call naming ``state``, a dict with a
    ``"state"`` key built in a function (the columns of an ``update(**columns)``), or SQL that
    sets ``state``."""
    tree = ast.parse(source)
    found = []

    def walk(node, where):
        for child in ast.iter_child_nodes(node):
            name = where
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{where}.{child.name}" if where else child.name
            if isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute) and \
                    child.func.attr in ("update", "bulk_update", "update_or_create", "create"):
                named = {kw.arg for kw in child.keywords}
                listed = {c.value for arg in child.args for c in ast.walk(arg)
                          if isinstance(c, ast.Constant)}
                if "state" in named or (child.func.attr == "bulk_update" and "state" in listed):
                    found.append((name, child.lineno))
            if where and isinstance(child, ast.Dict) and any(
                    isinstance(k, ast.Constant) and k.value == "state" for k in child.keys):
                found.append((name, child.lineno))
            if isinstance(child, ast.Constant) and isinstance(child.value, str) and \
                    _SQL_STATE_WRITE.search(child.value):
                found.append((name, child.lineno))
            walk(child, name)

    walk(tree, "")
    return found


class StateDoorTests(SimpleTestCase):
    def test_state_is_written_only_through_the_door(self):
        outside = []
        for module, path in package_modules().items():
            if module.startswith("migrations"):
                continue
            for function, line in state_writes(path.read_text()):
                if (module, function) not in STATE_WRITERS:
                    outside.append(f"django_jobs/{path.relative_to(PACKAGE)}:{line} "
                                   f"({function or 'module level'})")
        self.assertEqual(outside, [], "write job states through django_jobs.transitions")

    def test_every_allowed_writer_still_writes(self):
        seen = set()
        for module, path in package_modules().items():
            seen.update((module, function) for function, _ in state_writes(path.read_text()))
        self.assertEqual(STATE_WRITERS - seen, set())

    def test_the_scan_finds_each_kind_of_write(self):
        source = '''
def by_orm(jobs):
    jobs.filter(pk=1).update(state="cancelled")

def by_dict(jobs):
    jobs.update(**{"state": "available"})

def by_sql(cursor):
    cursor.execute("UPDATE django_jobs_job SET attempt = 0, state = 'available'")

def reading(jobs):
    return jobs.filter(state="available").values_list("state")
'''
        self.assertEqual([f for f, _ in state_writes(source)], ["by_orm", "by_dict", "by_sql"])



# -- no reaching into another module's private names --------------------------------------------


def private_uses(module: str, source: str, is_package: bool,
                 modules: dict[str, Path]) -> list[str]:
    """Where ``module`` (its ``source``) uses a private (``_name``, not dunder) name of another
    package module: ``from .other import _name``, or ``other._name`` on a module it imported
    by name."""
    tree = ast.parse(source)
    found = []
    imported: dict[str, str] = {}  # local name -> package module
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        for alias in node.names:
            single = ast.ImportFrom(module=node.module, names=[alias], level=node.level)
            targets = [t for t in resolve(module, is_package, single, modules) if t != module]
            if not targets:
                continue
            if alias.name.startswith("_") and not alias.name.startswith("__"):
                found.append(f"django_jobs.{module}:{node.lineno} imports {alias.name} from "
                             f"django_jobs.{targets[0]}")
            if targets[0].split(".")[-1] == alias.name:  # a module, imported by name
                imported[alias.asname or alias.name] = targets[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id in imported and node.attr.startswith("_") and \
                not node.attr.startswith("__"):
            found.append(f"django_jobs.{module}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


class PrivateNameTests(SimpleTestCase):
    def test_no_module_uses_another_modules_private_names(self):
        modules = package_modules()
        found = [use for module, path in modules.items()
                 for use in private_uses(module, path.read_text(), path.name == "__init__.py",
                                         modules)]
        self.assertEqual(found, [], "give what is needed a public name (and a contract)")

    def test_the_scan_finds_both_kinds_of_use(self):
        source = ("from .execution.executor import _send, execute\n"
                  "from .engines import wakeup\n"
                  "wakeup._listeners.clear()\n"
                  "wakeup.register('q', print)\n")
        uses = private_uses("testing", source, False, package_modules())
        self.assertEqual([use.split(" ", 1)[1] for use in uses],
                         ["imports _send from django_jobs.execution.executor",
                          "uses wakeup._listeners"])
