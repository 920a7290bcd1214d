"""How a send moves the journey's recorded stage: forward only, never out of a final stage."""

import pytest

from activities.messages import moved_on
from core.vocabulary import Stage


@pytest.mark.parametrize(("stage", "after", "expected"), [
    (Stage.enrolled, Stage.invited, Stage.invited),
    (Stage.invited, None, Stage.invited),
    (Stage.data_entered, Stage.verification_pending, Stage.verification_pending),
    # The customer opened the page, or answered, before the invitation's send was recorded.
    (Stage.opened, Stage.invited, Stage.opened),
    (Stage.data_entered, Stage.invited, Stage.data_entered),
    (Stage.verification_pending, Stage.invited, Stage.verification_pending),
    # Ended while the send was in flight.
    (Stage.cancelled, Stage.invited, Stage.cancelled),
    (Stage.verified, Stage.verification_pending, Stage.verified),
])
def test_a_send_moves_the_stage_forward_only(stage, after, expected):
    assert moved_on(stage, after) == expected
