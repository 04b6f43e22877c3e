package keyload.fault;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import keyload.rewrite.AppletClassLoader;
import org.objectweb.asm.ClassReader;
import org.objectweb.asm.ClassWriter;
import org.objectweb.asm.Opcodes;
import org.objectweb.asm.Type;
import org.objectweb.asm.tree.AbstractInsnNode;
import org.objectweb.asm.tree.ClassNode;
import org.objectweb.asm.tree.InsnList;
import org.objectweb.asm.tree.JumpInsnNode;
import org.objectweb.asm.tree.LdcInsnNode;
import org.objectweb.asm.tree.LineNumberNode;
import org.objectweb.asm.tree.MethodInsnNode;
import org.objectweb.asm.tree.MethodNode;

/**
 * Loads the applet classes (from the class files the build made for the converter) with every conditional
 * branch ({@code IFEQ} .. {@code IF_ACMPNE}, {@code IFNULL}, {@code IFNONNULL}) replaced by a call to
 * {@link Glitch} that takes the same operands and the site's number, followed by {@code IFNE} to the same
 * target: unarmed, the class behaves as written; armed, the chosen sites go the other way. The applets carry
 * no test code. Sites are numbered over the applet classes in name order, methods in class-file order.
 */
public final class GlitchedAppletLoader extends AppletClassLoader {

    /** One conditional branch of the applet bytecode. */
    public static final class Site {
        public final int number;
        public final String className;
        public final String method;
        public final int line;
        public final String opcode;

        Site(int number, String className, String method, int line, String opcode) {
            this.number = number;
            this.className = className;
            this.method = method;
            this.line = line;
            this.opcode = opcode;
        }

        @Override
        public String toString() {
            return String.format("#%d %s.%s line %d %s", number, className, method, line, opcode);
        }
    }

    private static final String HOOK = Type.getInternalName(Glitch.class);
    private static final String[] APPLET_CLASSES = {"AesEngine", "AsApplet", "Common", "EiApplet", "KeyPool",
        "Persistent", "Protocol", "RecordStore", "Transients"};
    private static final java.util.Map<Integer, String> OPCODE_NAMES = new java.util.HashMap<>();

    static {
        for (java.lang.reflect.Field field : Opcodes.class.getFields()) {
            if (field.getName().startsWith("IF") && field.getType() == int.class) {
                try {
                    OPCODE_NAMES.put(field.getInt(null), field.getName());
                } catch (IllegalAccessException e) {
                    throw new IllegalStateException(e);
                }
            }
        }
    }

    private final List<Site> sites = new ArrayList<>();
    private final java.util.Map<String, byte[]> rewritten = new java.util.HashMap<>();

    public GlitchedAppletLoader() {
        super(GlitchedAppletLoader.class);
        for (String simpleName : APPLET_CLASSES) {
            String name = APPLET_PACKAGE + simpleName;
            try {
                rewritten.put(name, rewrite(simpleName, classBytes(name)));
            } catch (ClassNotFoundException e) {
                throw new IllegalStateException(e.getMessage(), e);
            }
        }
    }

    /** Every conditional branch of the applet classes, by number. */
    public List<Site> sites() {
        return Collections.unmodifiableList(sites);
    }

    @Override
    protected byte[] appletBytes(String name) throws ClassNotFoundException {
        byte[] bytes = rewritten.get(name);
        if (bytes == null) {
            throw new ClassNotFoundException(name + " is not one of the applet classes the campaign knows");
        }
        return bytes;
    }

    private byte[] rewrite(String simpleName, byte[] classFile) {
        ClassNode node = new ClassNode();
        new ClassReader(classFile).accept(node, 0);
        for (MethodNode method : node.methods) {
            int line = 0;
            for (AbstractInsnNode insn : method.instructions.toArray()) {
                if (insn instanceof LineNumberNode) {
                    line = ((LineNumberNode) insn).line;
                }
                if (insn instanceof JumpInsnNode && insn.getOpcode() != Opcodes.GOTO
                        && insn.getOpcode() != Opcodes.JSR) {
                    JumpInsnNode jump = (JumpInsnNode) insn;
                    Site site = new Site(sites.size(), simpleName, method.name, line, OPCODE_NAMES.get(jump.getOpcode()));
                    sites.add(site);
                    InsnList call = new InsnList();
                    call.add(new LdcInsnNode(jump.getOpcode()));
                    call.add(new LdcInsnNode(site.number));
                    call.add(new MethodInsnNode(Opcodes.INVOKESTATIC, HOOK, hookName(jump.getOpcode()),
                            hookDescriptor(jump.getOpcode()), false));
                    method.instructions.insertBefore(jump, call);
                    method.instructions.set(jump, new JumpInsnNode(Opcodes.IFNE, jump.label));
                }
            }
        }
        ClassWriter writer = new ClassWriter(ClassWriter.COMPUTE_MAXS);
        node.accept(writer);
        return writer.toByteArray();
    }

    private static String hookName(int opcode) {
        if (opcode >= Opcodes.IFEQ && opcode <= Opcodes.IFLE) {
            return "compareZero";
        }
        if (opcode >= Opcodes.IF_ICMPEQ && opcode <= Opcodes.IF_ICMPLE) {
            return "compare";
        }
        if (opcode == Opcodes.IF_ACMPEQ || opcode == Opcodes.IF_ACMPNE) {
            return "compareReferences";
        }
        return "compareNull";
    }

    private static String hookDescriptor(int opcode) {
        switch (hookName(opcode)) {
            case "compareZero": return "(III)Z";
            case "compare": return "(IIII)Z";
            case "compareReferences": return "(Ljava/lang/Object;Ljava/lang/Object;II)Z";
            default: return "(Ljava/lang/Object;II)Z";
        }
    }
}
