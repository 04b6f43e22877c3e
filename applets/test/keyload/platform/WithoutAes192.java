package keyload.platform;

import javacard.security.CryptoException;
import javacard.security.Key;
import javacard.security.KeyBuilder;
import keyload.rewrite.AppletClassLoader;
import org.objectweb.asm.ClassReader;
import org.objectweb.asm.ClassVisitor;
import org.objectweb.asm.ClassWriter;
import org.objectweb.asm.MethodVisitor;
import org.objectweb.asm.Opcodes;
import org.objectweb.asm.Type;

/**
 * A card without AES-192, for the applets: loads the applet classes with every
 * {@code KeyBuilder.buildKey} call routed through {@link #buildKey}, which refuses 192-bit AES keys as such
 * a card's platform does (CryptoException.NO_SUCH_ALGORITHM). The applets carry no test code; this is the
 * test rewriting their class files, as the tearing harness does.
 */
public final class WithoutAes192 extends AppletClassLoader {

    private static final String KEY_BUILDER = "javacard/security/KeyBuilder";

    public WithoutAes192() {
        super(WithoutAes192.class);
    }

    /** What the rewritten applets call instead of {@link KeyBuilder#buildKey(byte, short, boolean)}. */
    public static Key buildKey(byte type, short bits, boolean encryption) {
        if (bits == KeyBuilder.LENGTH_AES_192) {
            CryptoException.throwIt(CryptoException.NO_SUCH_ALGORITHM);
        }
        return KeyBuilder.buildKey(type, bits, encryption);
    }

    @Override
    protected byte[] appletBytes(String name) throws ClassNotFoundException {
        return rewrite(classBytes(name));
    }

    private static byte[] rewrite(byte[] classFile) {
        ClassReader reader = new ClassReader(classFile);
        ClassWriter writer = new ClassWriter(reader, 0);
        String self = Type.getInternalName(WithoutAes192.class);
        reader.accept(new ClassVisitor(Opcodes.ASM9, writer) {
            @Override
            public MethodVisitor visitMethod(int access, String name, String descriptor, String signature,
                    String[] exceptions) {
                return new MethodVisitor(Opcodes.ASM9, super.visitMethod(access, name, descriptor, signature,
                        exceptions)) {
                    @Override
                    public void visitMethodInsn(int opcode, String owner, String method, String desc, boolean itf) {
                        if (KEY_BUILDER.equals(owner) && "buildKey".equals(method) && "(BSZ)Ljavacard/security/Key;"
                                .equals(desc)) {
                            super.visitMethodInsn(opcode, self, method, desc, false);
                        } else {
                            super.visitMethodInsn(opcode, owner, method, desc, itf);
                        }
                    }
                };
            }
        }, 0);
        return writer.toByteArray();
    }
}
