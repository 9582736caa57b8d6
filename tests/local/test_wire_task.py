"""The cluster's hand-written Task encoder gives the generated encoder's bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flame._proto import flame as pb
from flame.local._wire import WireTask, encode_task

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)
BLOBS = st.one_of(st.none(), st.binary(max_size=300))
TIMES = st.integers(-(2**63), 2**63 - 1)

TASKS = st.builds(
    pb.Task,
    metadata=st.one_of(
        st.none(),
        st.builds(pb.Metadata, id=TEXT, name=TEXT, owner=st.one_of(st.none(), TEXT)),
    ),
    spec=st.one_of(st.none(), st.builds(pb.TaskSpec, session_id=TEXT, input=BLOBS, output=BLOBS)),
    status=st.one_of(
        st.none(),
        st.builds(
            pb.TaskStatus,
            state=st.sampled_from(list(pb.TaskState)),
            creation_time=TIMES,
            completion_time=st.one_of(st.none(), TIMES),
        ),
    ),
)


@settings(max_examples=300)
@given(task=TASKS)
def test_encode_task_matches_the_generated_encoder(task: pb.Task) -> None:
    assert encode_task(task) == bytes(task)
    wire = WireTask(metadata=task.metadata, spec=task.spec, status=task.status)
    assert isinstance(wire, pb.Task)
    assert bytes(wire) == wire.SerializeToString() == bytes(task)
    assert pb.Task.parse(bytes(wire)) == task
