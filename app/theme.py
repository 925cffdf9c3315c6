"""One calm look for every window: palette, spacing, type sizes and a small style sheet."""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

SPACING_PX = 12  # between widgets in a group
MARGIN_PX = 20  # around a window's content
CARD_PADDING_PX = 14

BASE_POINT_SIZE = 10
TITLE_POINT_SIZE = 15
FIGURE_POINT_SIZE = 17  # the big numbers on the dashboard's cards

BACKGROUND = "#f4f6f8"
SURFACE = "#ffffff"
BORDER = "#dde3ea"
TEXT = "#1f2933"
MUTED_TEXT = "#616e7c"
ACCENT = "#2b7a78"  # teal: the app's colour
ACCENT_SOFT = "#e3f1f0"
ERROR_TEXT = "#b03a2e"
OK_TEXT = "#2a7a4b"

STATE_COLORS = {  # icon and badge colour per icon state
    "serving": "#2f8f5b",
    "paused": "#7b8794",
    "draining": "#d69e2e",
    "starting": "#3e7cb1",
    "error": "#c0392b",
}

COVERAGE_GAP = "#d64545"  # a block nobody serves
COVERAGE_THIN = "#e9b949"  # one server: one crash from a gap
COVERAGE_OK = "#52a373"  # two or more


def style_sheet() -> str:
    return f"""
    QWidget {{ color: {TEXT}; }}
    QMainWindow, QDialog, QWizard {{ background: {BACKGROUND}; }}
    QFrame#card {{ background: {SURFACE}; border: 1px solid {BORDER}; border-radius: 8px; }}
    QLabel#muted {{ color: {MUTED_TEXT}; }}
    QLabel#error {{ color: {ERROR_TEXT}; }}
    QLabel#ok {{ color: {OK_TEXT}; }}
    QLabel#title {{ font-size: {TITLE_POINT_SIZE}pt; font-weight: 600; }}
    QLabel#figure {{ font-size: {FIGURE_POINT_SIZE}pt; font-weight: 600; }}
    QLabel#empty {{ color: {MUTED_TEXT}; font-style: italic; padding: 12px; }}
    QPushButton {{ padding: 6px 14px; border-radius: 6px; border: 1px solid {BORDER}; background: {SURFACE}; }}
    QPushButton:hover {{ border-color: {ACCENT}; }}
    QPushButton:disabled {{ color: {MUTED_TEXT}; background: {BACKGROUND}; }}
    QPushButton#primary {{ background: {ACCENT}; color: white; border-color: {ACCENT}; }}
    QPushButton#primary:disabled {{ background: #9cc5c3; border-color: #9cc5c3; }}
    QLineEdit, QPlainTextEdit {{
        padding: 5px; border: 1px solid {BORDER}; border-radius: 6px; background: {SURFACE};
    }}
    QLineEdit:focus, QPlainTextEdit:focus {{ border-color: {ACCENT}; }}
    QLineEdit[invalid="true"] {{ border-color: {ERROR_TEXT}; }}
    QTableWidget {{ background: {SURFACE}; border: none; gridline-color: {BORDER}; }}
    QHeaderView::section {{ background: {SURFACE}; border: none; border-bottom: 1px solid {BORDER};
        padding: 6px; color: {MUTED_TEXT}; font-weight: 600; }}
    QScrollArea {{ background: transparent; border: none; }}
    """


def apply_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    palette = QPalette()
    palette.setColor(QPalette.ColorRole.Window, QColor(BACKGROUND))
    palette.setColor(QPalette.ColorRole.Base, QColor(SURFACE))
    palette.setColor(QPalette.ColorRole.AlternateBase, QColor("#f8fafb"))
    palette.setColor(QPalette.ColorRole.Text, QColor(TEXT))
    palette.setColor(QPalette.ColorRole.WindowText, QColor(TEXT))
    palette.setColor(QPalette.ColorRole.ButtonText, QColor(TEXT))
    palette.setColor(QPalette.ColorRole.Button, QColor(SURFACE))
    palette.setColor(QPalette.ColorRole.Highlight, QColor(ACCENT))
    palette.setColor(QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
    palette.setColor(QPalette.ColorRole.ToolTipBase, QColor(SURFACE))
    palette.setColor(QPalette.ColorRole.ToolTipText, QColor(TEXT))
    app.setPalette(palette)
    font = QFont(app.font())
    font.setPointSize(BASE_POINT_SIZE)
    app.setFont(font)
    app.setStyleSheet(style_sheet())
