package keyload.tearing;

import java.util.Set;
import keyload.rewrite.AppletClassLoader;
import org.objectweb.asm.ClassReader;
import org.objectweb.asm.ClassVisitor;
import org.objectweb.asm.ClassWriter;
import org.objectweb.asm.MethodVisitor;
import org.objectweb.asm.Opcodes;
import org.objectweb.asm.Type;

/**
 * Loads the applet classes (package {@code keyload.applet}, from the class files the build made for the
 * converter) with every persistent write routed through {@link PowerCut}, key objects' {@code setKey} and
 * {@code clearKey} included. The rewriting happens here, in
 * the test, so the applets themselves carry no test code: the CAP and the lint see the classes as built.
 *
 * <p>Everything else (the Java Card API of jCardSim, {@link PowerCut}) comes from the parent loader, so the
 * test and the rewritten applets share one {@link PowerCut} ({@link AppletClassLoader}).
 */
public final class TornAppletLoader extends AppletClassLoader {

    private static final String HOOK = Type.getInternalName(PowerCut.class);
    private static final String UTIL = "javacard/framework/Util";
    private static final Set<String> UTIL_WRITES = Set.of("arrayCopy", "arrayCopyNonAtomic", "arrayFillNonAtomic",
            "setShort");
    private static final String CONSTRUCTOR = "<init>";
    private static final String AES_KEY = "javacard/security/AESKey";

    public TornAppletLoader() {
        super(TornAppletLoader.class);
    }

    @Override
    protected byte[] appletBytes(String name) throws ClassNotFoundException {
        return rewrite(classBytes(name));
    }

    /** The class with its writes routed through the hook; stack shapes are unchanged, so are the frames. */
    static byte[] rewrite(byte[] classFile) {
        ClassReader reader = new ClassReader(classFile);
        ClassWriter writer = new ClassWriter(reader, 0);
        reader.accept(new ClassVisitor(Opcodes.ASM9, writer) {
            @Override
            public MethodVisitor visitMethod(int access, String name, String descriptor, String signature,
                    String[] exceptions) {
                MethodVisitor next = super.visitMethod(access, name, descriptor, signature, exceptions);
                return new WriteRouter(next, CONSTRUCTOR.equals(name));
            }
        }, 0);
        return writer.toByteArray();
    }

    /** Routes one method's writes through {@link PowerCut}. */
    private static final class WriteRouter extends MethodVisitor {
        private final boolean constructor;

        WriteRouter(MethodVisitor next, boolean constructor) {
            super(Opcodes.ASM9, next);
            this.constructor = constructor;
        }

        @Override
        public void visitInsn(int opcode) {
            if (opcode == Opcodes.BASTORE) {
                super.visitMethodInsn(Opcodes.INVOKESTATIC, HOOK, "bastore", "(Ljava/lang/Object;II)V", false);
            } else if (opcode == Opcodes.SASTORE) {
                super.visitMethodInsn(Opcodes.INVOKESTATIC, HOOK, "sastore", "([SII)V", false);
            } else {
                super.visitInsn(opcode);
            }
        }

        @Override
        public void visitFieldInsn(int opcode, String owner, String name, String descriptor) {
            if (opcode == Opcodes.PUTFIELD && !constructor) {
                super.visitMethodInsn(Opcodes.INVOKESTATIC, HOOK, "fieldWrite", "()V", false);
            }
            super.visitFieldInsn(opcode, owner, name, descriptor);
        }

        @Override
        public void visitMethodInsn(int opcode, String owner, String name, String descriptor, boolean isInterface) {
            if (AES_KEY.equals(owner) && name.equals("setKey")) {
                super.visitMethodInsn(Opcodes.INVOKESTATIC, HOOK, "setKey", "(Ljava/lang/Object;[BS)V", false);
                return;
            }
            if (AES_KEY.equals(owner) && name.equals("clearKey")) {
                super.visitMethodInsn(Opcodes.INVOKESTATIC, HOOK, "clearKey", "(Ljava/lang/Object;)V", false);
                return;
            }
            boolean utilWrite = opcode == Opcodes.INVOKESTATIC && UTIL.equals(owner) && UTIL_WRITES.contains(name);
            super.visitMethodInsn(opcode, utilWrite ? HOOK : owner, name, descriptor, isInterface);
        }
    }
}
