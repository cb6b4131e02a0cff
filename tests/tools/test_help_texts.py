"""Every tool's and benchmark's --help is whole: its description ends a sentence, and
tools/train.py lists the plugin's own flag (issue 26 item 8)."""
import pytest
from doc_commands import all_script_helps


@pytest.fixture(scope='module')
def helps():
    return all_script_helps()


MMSEG_PARSERS = ('tools/train.py', 'tools/test.py')  # MMSeg's own argument parsers


def _description(text):
    """The paragraph after argparse's usage block."""
    paragraphs = [p for p in text.split('\n\n') if p.strip()]
    usage = next(i for i, p in enumerate(paragraphs) if p.startswith('usage:'))
    return ' '.join(paragraphs[usage + 1].split())


def test_every_description_is_a_whole_sentence(helps):
    assert len(helps) >= 20
    cut = {script: _description(text)[-60:] for script, text in helps.items()
           if script not in MMSEG_PARSERS and not _description(text).endswith(('.', '?', ')', ':'))}
    assert cut == {}


def test_train_help_lists_allow_random_teacher(helps):
    text = helps['tools/train.py']
    assert '--resume' in text and '--cfg-options' in text  # MMSeg's parser
    assert '\n  --allow-random-teacher\n' in text
