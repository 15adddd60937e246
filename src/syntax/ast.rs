//! The syntax tree. Every node carries a byte span into the source it came from.

/// A byte range `start..end` into one source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start,
            end: end.max(start),
        }
    }
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// A parsed source file: statements in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub stmts: Vec<Stmt>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StmtKind {
    /// `let name = value`
    Let { name: Ident, value: Expr },
    /// `fn name(a, b) = body`
    Fn {
        name: Ident,
        params: Vec<Ident>,
        body: Expr,
    },
    /// `import "file.rlq"`
    Import { path: String, path_span: Span },
    /// A bare expression; its value is the statement's value.
    Expr(Expr),
}

/// A name with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Null,
    Bool(bool),
    /// `is_int` remembers that the literal had no fraction or exponent, so a column expression can
    /// keep integer columns integer.
    Number {
        value: f64,
        is_int: bool,
    },
    Str(String),
    List(Vec<Expr>),
    /// `{name: value, …}`: a table literal. A list value is a column; a single value, one row's
    /// cell. A list of records (`[{…}, {…}]`) is a table of rows.
    Record(Vec<(Ident, Expr)>),
    /// A bare name: a variable, a column (inside table verbs), or a verb called with no arguments.
    Var(String),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `xs[i]`
    Index(Box<Expr>, Box<Expr>),
    /// `verb item…` or `f(item, …)`: resolved against the verb's signature at evaluation time.
    Command(Command),
    /// `a | b | c`: two or more stages; every stage after the first receives the previous value.
    Pipeline(Vec<Expr>),
    /// `fn(a, b) = body`: a function value. It keeps the parameters of the function it was
    /// written in (if any), so `fn(k) = f(run, k)` inside `fn g(run)` sees `run`.
    Lambda {
        params: Vec<Ident>,
        body: Box<Expr>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `x in [a, b]` (membership; substring for strings)
    In,
    And,
    Or,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::In => "in",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
        }
    }
}

/// A verb applied to items, parsed without knowing the verb: `top 20 by score` is
/// `verb = top, items = [20, by, score]`; the signature of `top` later says `by` is a keyword.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub verb: Ident,
    pub items: Vec<Item>,
    /// Written as `f(a, b)` rather than `f a, b`.
    pub call_syntax: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub kind: ItemKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ItemKind {
    /// `expr` or `expr as name`
    Expr { expr: Expr, alias: Option<Ident> },
    /// `name = expr` (as in `with z = score * 2`)
    Assign { name: Ident, expr: Expr },
}

impl Item {
    /// The item's name if it is a bare word (`by`, `desc`, `self_entropy`), with no alias.
    pub fn bare_word(&self) -> Option<&str> {
        match &self.kind {
            ItemKind::Expr { expr, alias: None } => match &expr.kind {
                ExprKind::Var(name) => Some(name),
                _ => None,
            },
            _ => None,
        }
    }

    /// The expression of the item (the right side of an assignment).
    pub fn expr(&self) -> &Expr {
        match &self.kind {
            ItemKind::Expr { expr, .. } | ItemKind::Assign { expr, .. } => expr,
        }
    }

    /// The output name the user gave (`as name` or `name = …`).
    pub fn alias(&self) -> Option<&Ident> {
        match &self.kind {
            ItemKind::Expr { alias, .. } => alias.as_ref(),
            ItemKind::Assign { name, .. } => Some(name),
        }
    }
}
